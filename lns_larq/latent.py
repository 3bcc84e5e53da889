"""The distribution of a binary network's latent weights: how far an optimizer step
has to move a weight before its sign, and so its binary weight, flips.

A binary weight is sign(W) of its latent weight W (times a scale). An SGD step of
learning rate η moves W by about η times its (momentum-averaged) gradient, so a
small step flips only the weights near zero, and a weight at the clip of
`weight_clip` (|W| = 1) is the farthest from flipping. The baseline's optimizer
shapes this distribution (Adam's steps are about its learning rate whatever the
gradient; SGD's follow the gradient), and with it how much fine-tuning at a small
rate can disturb the pretrained binary weights (issue 36).

```python
import lns_larq
from lns_larq import latent, models

stats = latent.distribution(models.get("resnet20"))
print(f"median |W| {stats['median_abs']:.3f}, {100 * stats['at_clip']:.1f} % at the clip")
```
"""

import numpy as np
import tensorflow as tf

from lns_larq.keras_utils import all_layers, is_binarized

__all__ = ["distribution", "latent_weights"]


def latent_weights(model: tf.keras.Model) -> np.ndarray:
    """Every latent weight of `model`'s binarized layers, flattened into one array.

    `np.array` of a Larq `QuantizedVariable` is its latent (full-precision) value,
    whatever the quantized scope: what the optimizer updates and sign() binarizes.
    """
    kernels = [np.array(layer.kernel).ravel() for layer in all_layers(model) if is_binarized(layer)]
    if not kernels:
        raise ValueError(f"{model.name} has no binarized layer")
    return np.concatenate(kernels)


def distribution(model: tf.keras.Model, clip: float = 1.0, near_zero: float = 0.01) -> dict:
    """Summary of the latent weights' magnitudes |W| of `model`'s binarized layers.

    # Arguments
        model: A Larq model (a baseline, or its LNS variant: the latent weights the
            mapping reads).
        clip: The clip of `weight_clip`; a weight within 1 % of it counts as at the
            clip (a clipped weight that the next step moved a little inward is still
            the farthest from flipping).
        near_zero: The bound under which a weight counts as near zero.

    # Returns
        A dict: `weights` (how many), `median_abs`, `mean_abs`, the quantiles
        `p10_abs`, `p25_abs`, `p75_abs`, `p90_abs`, and the fractions `at_clip`
        (|W| >= 0.99 clip) and `near_zero` (|W| < near_zero).
    """
    w = np.abs(latent_weights(model).astype(np.float64))
    p10, p25, median, p75, p90 = np.percentile(w, [10, 25, 50, 75, 90])
    return dict(weights=int(w.size), median_abs=float(median), mean_abs=float(w.mean()), p10_abs=float(p10),
                p25_abs=float(p25), p75_abs=float(p75), p90_abs=float(p90),
                at_clip=float(np.mean(w >= 0.99 * clip)), near_zero=float(np.mean(w < near_zero)))
