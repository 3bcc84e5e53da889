"""Turn a trained binary Larq model into an LNS model, and the warm-start freeze."""

import contextlib

import larq as lq
import tensorflow as tf

from lns_larq.quantizers import LNSQuantizer, scale_kind

LNS_OPTIONS = frozenset({"mapping", "alpha", "rho_pos", "rho_neg", "bound", "width"})


def is_binarized_conv(layer):
    """A Larq `QuantConv2D` whose kernel quantizer is binary (precision 1)."""
    quantizer = getattr(layer, "kernel_quantizer", None)
    return isinstance(layer, lq.layers.QuantConv2D) and getattr(quantizer, "precision", None) == 1


def lns_layers(model):
    """The layers of `model` whose kernel quantizer is an `LNSQuantizer`."""
    return [
        layer for layer in _all_layers(model)
        if isinstance(getattr(layer, "kernel_quantizer", None), LNSQuantizer)
    ]


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, tf.keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def lnsify(model, **quantizer_options):
    """A copy of `model` with every binarized conv's kernel quantizer an `LNSQuantizer`.

    Each replacement keeps the scale kind of the quantizer it replaces (DoReFa:
    layer, XNOR/magnitude-aware: channel, plain sign: none). All weights of `model`
    are copied; the mapping networks start from their initialisation, under which
    the LNS model computes the same function as `model`. Layers that are not
    binarized are left alone. Works on any functional or sequential Larq model,
    larq-zoo architectures included.

    ```python
    baseline = lns_larq.models.get("resnet20", quantizer="dorefa")
    model = lns_larq.lnsify(baseline, alpha=1.0, rho_pos=0.005)
    ```

    # Arguments
        model: A functional or sequential Keras model with Larq layers.
        **quantizer_options: `LNSQuantizer` arguments except `scale` (mapping,
            alpha, rho_pos, rho_neg, bound, width).

    # Raises
        ValueError: if `model` has no binarized `QuantConv2D`, or an unknown option.
    """
    unknown = set(quantizer_options) - LNS_OPTIONS
    if unknown:
        raise ValueError(f"Unknown LNS options {sorted(unknown)}; valid: {sorted(LNS_OPTIONS)}.")
    LNSQuantizer(**quantizer_options)  # validate before cloning
    if not any(is_binarized_conv(layer) for layer in _all_layers(model)):
        raise ValueError(
            f"Model {model.name!r} has no binarized QuantConv2D (a QuantConv2D with a "
            "1-bit kernel_quantizer); there is nothing for LNS to map."
        )

    def clone(layer):
        config = layer.get_config()
        if is_binarized_conv(layer):
            config["kernel_quantizer"] = LNSQuantizer(
                scale=scale_kind(layer.kernel_quantizer), **quantizer_options
            )
        return layer.__class__.from_config(config)

    new_model = tf.keras.models.clone_model(model, clone_function=clone)
    new_model._name = f"{model.name}_lns"
    copy_weights(model, new_model)
    return new_model


def copy_weights(source, target):
    """Copy every weight of `source` into the layer of the same name in `target`.

    A layer of `target` may have more weights than its namesake (an LNS conv's
    mapping network); those are left as they are.
    """
    targets = {layer.name: layer for layer in _all_layers(target)}
    for layer in _all_layers(source):
        if not layer.weights:
            continue
        if layer.name not in targets:
            raise ValueError(f"Layer {layer.name!r} of {source.name!r} is not in {target.name!r}.")
        dest = targets[layer.name].weights
        for i, weight in enumerate(layer.weights):
            if i >= len(dest) or tuple(dest[i].shape) != tuple(weight.shape):
                raise ValueError(
                    f"Weight {weight.name} {tuple(weight.shape)} of layer {layer.name!r} "
                    f"does not match the target layer's weights."
                )
            dest[i].assign(tf.convert_to_tensor(getattr(weight, "latent_variable", weight)))


@contextlib.contextmanager
def mapping_only(model):
    """Within the block, only the LNS mapping networks of `model` are trainable.

    The warm start of paper Sec. 4.1: the mapping networks learn while every other
    weight (latent kernels included) is frozen and batch normalisation runs in
    inference mode. Compile inside the block; the previous trainability is restored
    on exit.

    ```python
    with lns_larq.lns.mapping_only(model):
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(data, epochs=5)
    ```
    """
    mapped = lns_layers(model)
    if not mapped:
        raise ValueError(f"Model {model.name!r} has no LNS layer to warm-start.")
    layers = list(_all_layers(model))
    saved = [(layer, layer.trainable) for layer in layers]
    moved = []
    try:
        for layer in layers:
            layer.trainable = any(layer is m for m in mapped)
        for layer in mapped:
            # Keras freezes whole layers only, so the latent kernel moves to the
            # non-trainable list and only the quantizer's mapping weights train.
            kernel = layer.kernel
            _set_weight_lists(
                layer,
                [w for w in layer._trainable_weights if w is not kernel],
                [*layer._non_trainable_weights, kernel],
            )
            moved.append((layer, kernel))
        yield model
    finally:
        for layer, kernel in moved:
            _set_weight_lists(
                layer,
                [kernel, *layer._trainable_weights],
                [w for w in layer._non_trainable_weights if w is not kernel],
            )
        for layer, trainable in saved:
            layer.trainable = trainable


def _set_weight_lists(layer, trainable, non_trainable):
    # Keras' __setattr__ would track the variables in the lists as new weights
    # (re-appending them to `_trainable_weights`); these lists are plain lists.
    object.__setattr__(layer, "_trainable_weights", trainable)
    object.__setattr__(layer, "_non_trainable_weights", non_trainable)
