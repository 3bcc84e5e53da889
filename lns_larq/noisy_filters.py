"""The controlled noisy-label task: can a mapping correct binary weights it is told wrongly?

The paper's central mechanism (Sec. 3.2) is that a mapping \\(f_\\theta\\), trained on
noisy labels \\(\\tilde Q = \\mathrm{sign}(W)\\) through the corrected loss of Eq. 15,
recovers the clean binary weights \\(Q\\) where the labels are wrong. The paper does
not show this directly; this module does, on synthetic filters whose clean signs
are known:

- every (filter, input channel) has one clean sign, shared by its k x k taps, with
  magnitudes uniform in [0.2, 1];
- a fraction `rho` of single taps is flipped and shrunk towards zero (to 5-30 % of
  its magnitude), as straight-through training leaves near-zero latent weights on
  the wrong side.

`train_mapping` fits an `LNSQuantizer`'s mapping to the noisy labels alone (no
classification loss) and records, over the steps, the fraction of flipped taps
whose binary weight is corrected and the fraction of clean taps it breaks.

```python
task = lns_larq.noisy_filters.make_task(filters=64, channels=8, rho=0.05)
curve = lns_larq.noisy_filters.train_mapping(lns_larq.LNSQuantizer(), task, steps=50)
curve[-1]  # {"step": 50, "corrected": ..., "broken": ..., "agreement": ...}
```
"""

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class Task:
    """Latent kernel `(k, k, c_in, filters)`, its clean signs and the flipped taps."""

    kernel: np.ndarray
    clean: np.ndarray
    flipped: np.ndarray


def make_task(filters: int = 256, channels: int = 16, kernel_size: int = 3, rho: float = 0.05, seed: int = 0) -> Task:
    """Synthetic structured filters with a fraction `rho` of flipped, shrunk taps."""
    rng = np.random.default_rng(seed)
    shape = (kernel_size, kernel_size, channels, filters)
    clean = np.broadcast_to(rng.choice([-1.0, 1.0], size=(1, 1, channels, filters)), shape)
    magnitude = rng.uniform(0.2, 1.0, size=shape)
    flipped = rng.random(shape) < rho
    kernel = np.where(flipped, -clean * magnitude * rng.uniform(0.05, 0.3, size=shape),
                      clean * magnitude)
    return Task(kernel.astype(np.float32), clean.astype(np.float32), flipped)


def score(binary: np.ndarray, task: Task) -> dict[str, float]:
    """`corrected`, `broken` and `agreement` (with the noisy labels) of binary weights."""
    binary = np.sign(binary)
    right = binary == task.clean
    return {
        "corrected": float(right[task.flipped].mean()) if task.flipped.any() else float("nan"),
        "broken": float(1.0 - right[~task.flipped].mean()),
        "agreement": float((binary == np.sign(task.kernel)).mean()),
    }


def train_mapping(quantizer: Any, task: Task, steps: int, lr: float = 1e-3, every: int = 25,
                  seed: int = 0) -> list[dict[str, float]]:
    """Train `quantizer`'s mapping on the noisy-supervision loss alone.

    Adam at `lr`; the loss is `quantizer.auxiliary_loss` (Eq. 15, weighted by its
    alpha, which must be > 0) plus the mapping's L2 penalty. Returns the score after
    0, `every`, 2 `every`, ... and `steps` steps, each a dict with `step`.
    """
    if quantizer.alpha <= 0:
        raise ValueError("train_mapping needs a quantizer with alpha > 0.")
    tf.keras.utils.set_random_seed(seed)
    kernel = tf.constant(task.kernel)
    quantizer.build(kernel.shape)
    weights = quantizer.network.trainable_weights
    optimizer = tf.keras.optimizers.Adam(lr)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = quantizer.auxiliary_loss(kernel) + tf.add_n([0.0, *quantizer.network.losses])
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))

    def checkpoint(n):
        return {"step": n, **score(quantizer.predict_continuous(kernel).numpy(), task)}

    curve = [checkpoint(0)]
    for n in range(1, steps + 1):
        step()
        if n % every == 0 or n == steps:
            curve.append(checkpoint(n))
    return curve
