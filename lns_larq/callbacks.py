"""Keras callbacks for binary networks."""

import os

import larq as lq
import numpy as np
import tensorflow as tf

from lns_larq.lns import _all_layers, is_binarized_conv, lns_layers
from lns_larq.losses import unbiased_mse
from lns_larq.quantizers import quantized_kernel


def binary_signs(model):
    """`{layer name: int8 signs of the binary weights}` for every binarized conv."""
    return {
        layer.name: np.sign(quantized_kernel(layer).numpy()).astype(np.int8)
        for layer in _all_layers(model)
        if is_binarized_conv(layer)
    }


class FlipRate(tf.keras.callbacks.Callback):
    """After every epoch, the fraction of binary weights whose sign flipped (Fig. 3c).

    Adds to the epoch logs (and so to the history, `CSVLogger` and `TensorBoard`,
    when this callback comes before them):

    - `flip_rate`: flipped since the previous epoch, over all binarized convs;
    - `flip_rate_total`: differing from the weights when training began;
    - `flip_rate/<layer>`: the per-epoch rate of each layer (`per_layer=True`).

    The binary weights are those the convs use (for LNS, sign of the mapping's
    prediction, not of the latent weights). Larq's `FlipRatio` metric counts flips
    between consecutive *steps*; the paper's curve is per epoch, hence this callback.
    With `reference_path`, the starting weights are saved there so that a resumed
    run keeps measuring against the true start.

    ```python
    model.fit(data, epochs=3, callbacks=[lns_larq.callbacks.FlipRate()])
    ```
    """

    def __init__(self, per_layer=True, reference_path=None):
        super().__init__()
        self.per_layer = per_layer
        self.reference_path = reference_path
        self._previous = None
        self._start = None

    def on_train_begin(self, logs=None):
        current = binary_signs(self.model)
        if not current:
            raise ValueError("FlipRate needs a model with binarized QuantConv2D layers.")
        self._previous = current
        if self.reference_path and os.path.exists(self.reference_path):
            with np.load(self.reference_path) as f:
                self._start = {k: f[k] for k in f.files}
        else:
            self._start = current
            if self.reference_path:
                np.savez(self.reference_path, **current)

    def on_epoch_end(self, epoch, logs=None):
        current = binary_signs(self.model)
        logs = logs if logs is not None else {}
        flipped = flipped_total = size = 0
        for name, signs in current.items():
            changed = int(np.count_nonzero(signs != self._previous[name]))
            flipped += changed
            flipped_total += int(np.count_nonzero(signs != self._start[name]))
            size += signs.size
            if self.per_layer:
                logs[f"flip_rate/{name}"] = changed / signs.size
        logs["flip_rate"] = flipped / size
        logs["flip_rate_total"] = flipped_total / size
        self._previous = current


class LNSMonitor(tf.keras.callbacks.Callback):
    """Logs, after every epoch, the state of the model's LNS mappings:

    - `aux_loss`: the summed auxiliary loss \\(\\alpha \\sum_i \\tilde\\ell_i\\) (it
      depends on the weights only, not on the data);
    - `agreement`: the fraction of mapped binary weights equal to `sign(W)`.

    ```python
    model.fit(data, epochs=3, callbacks=[lns_larq.callbacks.LNSMonitor()])
    ```
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(lns_state(self.model))


def lns_state(model):
    """`{"aux_loss": ..., "agreement": ...}` of a model's LNS layers (see LNSMonitor)."""
    aux, agree, size = 0.0, 0, 0
    for layer in lns_layers(model):
        q = layer.kernel_quantizer
        latent = tf.convert_to_tensor(layer.kernel.latent_variable)
        q_hat = q.predict_continuous(latent)
        labels = lq.math.sign(latent)
        aux += q.alpha * float(tf.reduce_mean(unbiased_mse(q_hat, labels, q.rho_pos, q.rho_neg)))
        agree += int(tf.math.count_nonzero(lq.math.sign(q_hat) == labels))
        size += int(tf.size(latent))
    return {"aux_loss": aux, "agreement": agree / size if size else float("nan")}
