"""Verification of a converted model: Keras and LCE's interpreter on the same images.

```python
images, labels = lns_larq.data.cifar10_test_images(data_path, 100)
agreement = lns_larq.export.verify(model, report.flatbuffer, images, labels)
```
"""

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["Agreement", "interpreter", "verify"]


@dataclasses.dataclass
class Agreement:
    """Keras vs LCE on the same `n` images (see `verify`)."""

    n: int
    top1_agreement: float
    max_abs_logit_diff: float
    close_fraction: float  # images whose logits all agree within `atol`
    atol: float
    keras_accuracy: float | None = None
    lce_accuracy: float | None = None


def interpreter(flatbuffer: bytes, num_threads: int = 1) -> Any:
    """LCE's interpreter with its fast paths (indirect BGEMM, XNNPack for float ops).

    Without them binary convs take LCE's slow reference path.
    """
    import larq_compute_engine as lce

    return lce.testing.Interpreter(
        flatbuffer, num_threads=num_threads, use_reference_bconv=False,
        use_indirect_bgemm=True, use_xnnpack=True,
    )


def verify(model: tf.keras.Model, flatbuffer: bytes, images: np.ndarray, labels: np.ndarray | None = None,
           num_threads: int = 1, atol: float = 1e-3) -> Agreement:
    r"""Compare `model` (Keras, inference mode) with `flatbuffer` run by LCE.

    With Keras logits \(k\) and LCE logits \(l\) on `images` (normalised NHWC
    float32), returns the top-1 agreement
    \(\frac{1}{N}\sum_i [\arg\max_j k_{ij} = \arg\max_j l_{ij}]\),
    \(\max_{i,j} |k_{ij} - l_{ij}|\), the fraction of images whose logits all agree
    within `atol`, and both accuracies when `labels` are given.

    Most images agree to float precision. A few do not: the float ops before a
    sign round differently in TensorFlow and TFLite, an activation within rounding
    of zero flips, and the flip propagates through the binary layers. So the
    maximum difference is an outlier's, and top-1 agreement is the criterion.

    ```python
    images, labels = lns_larq.export.cifar10_test_images(data_path, 100)
    agreement = lns_larq.export.verify(model, report.flatbuffer, images, labels)
    ```
    """
    images = np.asarray(images, np.float32)
    keras_logits = model.predict(images, batch_size=100, verbose=0)
    lce_logits = interpreter(flatbuffer, num_threads).predict(images)
    keras_top1, lce_top1 = keras_logits.argmax(-1), lce_logits.argmax(-1)
    diff = np.abs(keras_logits - lce_logits).reshape(len(images), -1).max(axis=1)
    result = Agreement(
        n=len(images),
        top1_agreement=float(np.mean(keras_top1 == lce_top1)),
        max_abs_logit_diff=float(diff.max()),
        close_fraction=float(np.mean(diff <= atol)),
        atol=atol,
    )
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        result.keras_accuracy = float(np.mean(keras_top1 == labels))
        result.lce_accuracy = float(np.mean(lce_top1 == labels))
    return result
