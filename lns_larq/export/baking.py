"""Baking: a trained model as the plain Larq network it deploys as.

After training, LNS keeps only the mapped binary weights (paper Sec. 3.2): the
mapping networks \\(f_\\theta\\) are training-time machinery. `bake` folds each LNS
layer into a plain Larq `QuantConv2D` holding those weights; `constant_kernels`
makes every binary kernel a constant \\(\\pm s\\), as LCE needs it; `float_copy`
removes every quantizer, the float32 reference of the same architecture.

```python
model = lns_larq.models.get("resnet20_lns", quantizer="dorefa")
baked = lns_larq.export.bake(model)
binary, floats = lns_larq.export.deployable_params(baked)
```
"""

import numpy as np
import tensorflow as tf

from lns_larq.keras_utils import all_layers, clone_nested
from lns_larq.quantizers import lns_layers, quantized_kernel, scale_kind

__all__ = ["BAKED_QUANTIZERS", "bake", "constant_kernels", "deployable_params", "float_copy"]

# Baseline quantizer of each scale kind. Applied to a kernel that already is
# +/- s (s per layer, per output channel, or 1) it returns +/- s again, so the
# baked conv computes what the LNS conv computed, and LCE recognises the
# sign-and-scale pattern it converts to a binary conv.
BAKED_QUANTIZERS = {"layer": "dorefa_sign", "channel": "magnitude_aware_sign", None: "ste_sign"}


def _latent(weight):
    return tf.convert_to_tensor(getattr(weight, "latent_variable", weight))


def _copy_layer_weights(source, target):
    """Copy the latent values of `source`'s weights into `target`, in order."""
    if len(source.weights) != len(target.weights):
        raise ValueError(
            f"Layer {source.name!r} has {len(source.weights)} weights, its copy "
            f"{len(target.weights)}."
        )
    for src, dst in zip(source.weights, target.weights):
        dst.assign(_latent(src))


def bake(model: tf.keras.Model) -> tf.keras.Model:
    r"""An inference copy of `model` in which every LNS layer holds its binary weights.

    Each layer whose kernel quantizer is an `LNSQuantizer` becomes the same Larq
    layer with latent kernel \(K = s\cdot\mathrm{sign}(\hat Q_c)\), the weights the
    LNS layer convolves with in inference mode, and the baseline quantizer of the
    same scale kind (layer: `dorefa_sign`, channel: `magnitude_aware_sign`, none:
    `ste_sign`). Since \(K\) is already \(\pm s\), that quantizer returns \(K\):

    \[
    \frac{1}{n}\lVert K\rVert_1\,\mathrm{sign}(K) = s\,\mathrm{sign}(K) = K
    \]

    up to the float rounding of the mean (relative error about \(10^{-6}\); exact
    for `ste_sign`). The baked model therefore predicts what `model` predicts in
    inference mode, holds no weight of the mapping networks, and converts with
    LCE. Other layers are copied as they are.

    ```python
    model = lns_larq.models.get("resnet20_lns", quantizer="dorefa")
    baked = lns_larq.export.bake(model)
    assert not lns_larq.lns.lns_layers(baked)
    ```

    # Arguments
        model: A functional or sequential Keras model (nested models allowed).

    # Returns
        A new model, named `<model.name>_baked`. Layer names are kept.
    """
    mapped = {layer.name for layer in lns_layers(model)}

    def clone_layer(layer):
        config = layer.get_config()
        if layer.name in mapped:
            config["kernel_quantizer"] = BAKED_QUANTIZERS[scale_kind(layer.kernel_quantizer)]
        return layer.__class__.from_config(config)

    baked = clone_nested(model, clone_layer)
    baked._name = f"{model.name}_baked"
    targets = {layer.name: layer for layer in all_layers(baked)}
    for layer in all_layers(model):
        target = targets[layer.name]
        if layer.name in mapped:
            target.kernel.latent_variable.assign(quantized_kernel(layer))
            if getattr(layer, "use_bias", False):
                target.bias.assign(layer.bias)
        elif layer.weights:
            _copy_layer_weights(layer, target)
    return baked


def float_copy(model: tf.keras.Model) -> tf.keras.Model:
    """The same architecture in float32: every quantizer removed, zero padding.

    LNS layers are baked first. Weights are the latent ones (the values do not
    matter for size and latency, only the architecture does).

    ```python
    fp = lns_larq.export.float_copy(lns_larq.models.get("resnet20"))
    ```
    """
    if lns_layers(model):
        model = bake(model)

    def clone_layer(layer):
        config = layer.get_config()
        for key in config:
            if key.endswith("_quantizer"):
                config[key] = None
        if "pad_values" in config:  # one-padding only exists for binary inputs
            config["pad_values"] = 0.0
        return layer.__class__.from_config(config)

    copy = clone_nested(model, clone_layer)
    copy._name = f"{model.name}_float32"
    targets = {layer.name: layer for layer in all_layers(copy)}
    for layer in all_layers(model):
        if layer.weights:
            _copy_layer_weights(layer, targets[layer.name])
    return copy


def _has_binary_kernel(layer):
    return getattr(getattr(layer, "kernel_quantizer", None), "precision", None) == 1


def constant_kernels(model: tf.keras.Model) -> tf.keras.Model:
    r"""A copy of `model` whose binary kernels are constants \(K = Q(W)\), without quantizer.

    Each layer with a 1-bit `kernel_quantizer` gets as its kernel the \(\pm s\)
    values it multiplies with in inference (for DoReFa, \(K = \overline{|W|}\,
    \mathrm{sign}(W)\)), and no kernel quantizer or constraint; its input quantizer
    stays. The copy computes what `model` computes. `export_tflite` converts it,
    because TensorFlow folds an op into a constant only if its operands hold at
    most \(2^{30}\) bits (`kOperandsSizeThreshold` of its constant-folding
    policy): the quantizer of a kernel of more than \(2^{25}\) float32 weights
    (AlexNet's fc6 has \(6\cdot 6\cdot 256\cdot 4096 \approx 3.8\cdot 10^7\)) stays
    in the graph as SIGN, MEAN and MUL ops, so LCE sees no constant filter and
    keeps the layer in float. A constant filter converts at any size
    (`docs/design.md`). LNS layers are baked first.

    ```python
    folded = lns_larq.export.constant_kernels(lns_larq.models.get("alexnet"))
    assert folded.get_layer("fc6").kernel_quantizer is None
    ```
    """
    if lns_layers(model):
        model = bake(model)
    folded = {layer.name for layer in all_layers(model) if _has_binary_kernel(layer)}

    def clone_layer(layer):
        config = layer.get_config()
        if layer.name in folded:
            config.update(kernel_quantizer=None, kernel_constraint=None)
        return layer.__class__.from_config(config)

    copy = clone_nested(model, clone_layer)
    copy._name = model.name
    targets = {layer.name: layer for layer in all_layers(copy)}
    for layer in all_layers(model):
        if layer.weights:
            _copy_layer_weights(layer, targets[layer.name])
        if layer.name in folded:
            targets[layer.name].kernel.assign(quantized_kernel(layer))
    return copy


# The weight each Larq weight quantizer quantizes.
_QUANTIZED_WEIGHTS = {
    "kernel_quantizer": "kernel",
    "depthwise_quantizer": "depthwise_kernel",
    "pointwise_quantizer": "pointwise_kernel",
}


def deployable_params(model: tf.keras.Model) -> tuple[int, int]:
    """`(binary, float)` parameter counts of a deployable (baked) model.

    Binary: the weights of binary layers that a 1-bit quantizer quantizes (1 bit
    each once bit-packed); float: every other weight, batch-normalisation
    statistics included.
    """
    binary = total = 0
    for layer in all_layers(model):
        total += sum(int(np.prod(w.shape)) for w in layer.weights)
        for quantizer, weight in _QUANTIZED_WEIGHTS.items():
            if getattr(getattr(layer, quantizer, None), "precision", None) == 1:
                binary += int(np.prod(getattr(layer, weight).shape))
    return binary, total - binary
