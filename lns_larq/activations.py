"""What a binary network's sign activations see: how much of each binary layer's
input lies outside the straight-through estimator's window.

A binary layer binarizes its input x with sign(x). Larq's `ste_sign` passes the
gradient through where |x| <= clip_value (1 by default) and passes none outside;
`approx_sign` (Bi-Real's) has the same window |x| < 1. So an input entry outside
the window still sets its binary activation, but the loss's gradient does not flow
back through it into the layers below (only through the shortcuts). In a Bi-Real
ResNet, whose residual stream is a sum of batch-normalized branches with no
activation after the additions, that stream widens block by block within a stage,
and with it the share of entries the estimator blocks (issue 36's diagnosis of a
baseline that underfits).

```python
import numpy as np
import lns_larq
from lns_larq import activations, models

model = models.get("resnet8")
x = np.random.default_rng(0).normal(size=(64, 32, 32, 3)).astype("float32")
for row in activations.sign_inputs(model, x):
    print(f"{row['layer']}: std {row['std']:.2f}, {100 * row['outside']:.0f} % outside |x| <= {row['window']:g}")
```
"""

import numpy as np
import tensorflow as tf

__all__ = ["sign_inputs", "ste_window"]


def ste_window(quantizer) -> float:
    """The half-width of the input window in which `quantizer`'s straight-through
    gradient is non-zero: its `clip_value` (`ste_sign`'s, 1 by default), else 1
    (`approx_sign`'s, fixed)."""
    clip = getattr(quantizer, "clip_value", None)
    return 1.0 if clip is None else float(clip)


def sign_inputs(model: tf.keras.Model, x: np.ndarray, batch_size: int = 250) -> list[dict]:
    """Statistics of the input of every layer of `model` that binarizes its input.

    # Arguments
        model: A functional Keras model; its layers with an `input_quantizer` (Larq's
            quantized layers with binary activations) are measured, in graph order.
        x: Input images, normalized as the model was trained on them.
        batch_size: Images per forward pass (inference mode: batch norm uses its
            moving statistics, so the result does not depend on it).

    # Returns
        One dict per such layer: `layer` (its name), `window` (`ste_window` of its
        input quantizer), `std` and `mean_abs` of its input entries, and `outside`,
        the fraction of entries with |x| > window, whose gradient the estimator blocks.

    # Raises
        ValueError: if no layer of `model` binarizes its input.
    """
    layers = [layer for layer in model.layers if getattr(layer, "input_quantizer", None) is not None]
    if not layers:
        raise ValueError(f"{model.name} has no layer that binarizes its input")
    probe = tf.keras.Model(model.inputs, [layer.input for layer in layers])
    windows = [ste_window(layer.input_quantizer) for layer in layers]
    # Sums over every entry, in float64: a 10,000-image hold-out gives a stage-1
    # input 1e8 entries, past float32's exact range for counts and sums.
    n, total, total_sq, total_abs, outside = (np.zeros(len(layers)) for _ in range(5))
    for start in range(0, len(x), batch_size):
        outputs = probe(x[start:start + batch_size], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]  # one layer: one tensor
        for i, (value, window) in enumerate(zip(outputs, windows)):
            value = value.numpy().astype(np.float64)
            n[i] += value.size
            total[i] += value.sum()
            total_sq[i] += np.square(value).sum()
            total_abs[i] += np.abs(value).sum()
            outside[i] += np.count_nonzero(np.abs(value) > window)
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 0))
    return [dict(layer=layer.name, window=window, std=float(s), mean_abs=float(a / k), outside=float(o / k))
            for layer, window, s, a, o, k in zip(layers, windows, std, total_abs, outside, n)]
