"""Keras model surgery that every method and the export share, knowing none of them.

- walking a model's layers, nested models included (`all_layers`);
- cloning it layer by layer, nested models included (`clone_nested`);
- copying weights into a model with the same layer names (`copy_weights`);
- recognising binarized Larq layers (`is_binarized_conv`, `is_binarized`,
  `check_binarized_layers_convertible`);
- loading a saved model, with a one-line error (`load_model`);
- creating a compiled model's training state before `fit` (`build_compiled`).

```python
from lns_larq import models
from lns_larq.keras_utils import all_layers, clone_nested, copy_weights, is_binarized_conv

def without_kernel_quantizer(layer):
    config = layer.get_config()
    if is_binarized_conv(layer):
        config["kernel_quantizer"] = None
    return layer.__class__.from_config(config)

model = models.get("resnet20")
binary = [layer.name for layer in all_layers(model) if is_binarized_conv(layer)]  # 18 convs
latent = clone_nested(model, without_kernel_quantizer)  # convolves with the latent weights
copy_weights(model, latent)
```
"""

import os
from collections.abc import Callable, Iterable, Iterator

import larq as lq
import tensorflow as tf

from lns_larq.errors import first_line

__all__ = [
    "all_layers",
    "build_compiled",
    "check_binarized_layers_convertible",
    "clone_nested",
    "copy_weights",
    "is_binarized",
    "is_binarized_conv",
    "load_model",
]

# The attributes under which Larq layers keep their weight quantizers.
_QUANTIZER_ATTRIBUTES = ("kernel_quantizer", "depthwise_quantizer", "pointwise_quantizer")


def all_layers(model: tf.keras.Model) -> Iterator[tf.keras.layers.Layer]:
    """The layers of `model` in order, each nested model replaced by its own layers."""
    for layer in model.layers:
        if isinstance(layer, tf.keras.Model):
            yield from all_layers(layer)
        else:
            yield layer


def build_compiled(model: tf.keras.Model, dataset: tf.data.Dataset, optimizer: bool = True) -> None:
    """Create the variables that the first step of `fit` or `evaluate` would create:
    the optimizer's slots (`optimizer=True`) and the compiled loss's and metrics'.

    A `tf.function` that creates variables while it is traced is traced a second
    time, without them; Keras creates these lazily, inside its first `train_step`,
    so every `fit` traced its training step twice. Created beforehand, the same
    variables (the slots are built over `model.trainable_variables`, the list
    Keras' `train_step` passes to the optimizer, in that order and under the same
    names, so checkpoints are unchanged) leave one trace: measured on a 2-core AMD EPYC, the first `fit` of a
    ResNet-20 on two batches took 20.5 s instead of 39.1 s, 47 s instead of 98 s
    with the LNS mappings (docs/benchmarks.md). Call it after `compile`, in the
    distribution strategy's scope if there is one; `dataset` gives the labels'
    shape and type (its elements are `(x, y)` or `(x, y, sample_weight)`).

    ```python
    model = lns_larq.models.get("resnet8", input_shape=(28, 28, 1), num_classes=10)
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    data = tf.data.Dataset.from_tensor_slices((tf.zeros((8, 28, 28, 1)), tf.zeros(8, tf.int32))).batch(4)
    build_compiled(model, data)
    model.fit(data)  # its training step is traced once
    ```
    """
    if optimizer:
        # In the name scope apply_gradients builds them in: the same variable names.
        with tf.name_scope(model.optimizer.name or "optimizer"), tf.init_scope():
            model.optimizer.build(model.trainable_variables)
    labels = dataset.element_spec[1]
    y_true = tf.zeros([1, *labels.shape[1:]], labels.dtype)
    output = model.outputs[0]
    y_pred = tf.zeros([1, *output.shape[1:]], output.dtype)
    model.compiled_loss.build(y_pred)
    model.compiled_metrics.build(y_pred, y_true)


def clone_nested(
    model: tf.keras.Model, clone_layer: Callable[[tf.keras.layers.Layer], tf.keras.layers.Layer]
) -> tf.keras.Model:
    """`tf.keras.models.clone_model` with `clone_layer(layer)` applied to every layer,
    nested models included (`clone_model` itself copies a nested model, a `Sequential`
    inside a functional model say, without calling `clone_layer` on its layers).

    ```python
    copy = clone_nested(model, lambda layer: layer.__class__.from_config(layer.get_config()))
    ```
    """

    def clone_function(layer):
        if isinstance(layer, tf.keras.Model):
            return clone_nested(layer, clone_layer)
        return clone_layer(layer)

    return tf.keras.models.clone_model(model, clone_function=clone_function)


def copy_weights(source: tf.keras.Model, target: tf.keras.Model) -> None:
    """Copy every weight of `source` into the layer of the same name in `target`.

    Latent weights are copied (a Larq `QuantizedVariable`'s unquantized value). A layer
    of `target` may have more weights than its namesake (an LNS conv's mapping network,
    say); those are left as they are.

    # Raises
        ValueError: if a layer with weights is missing from `target`, or a weight's
            shape differs from its counterpart's.
    """
    targets = {layer.name: layer for layer in all_layers(target)}
    for layer in all_layers(source):
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


def is_binarized_conv(layer: tf.keras.layers.Layer) -> bool:
    """Whether `layer` is a Larq `QuantConv2D` whose kernel quantizer is binary (precision 1)."""
    quantizer = getattr(layer, "kernel_quantizer", None)
    return isinstance(layer, lq.layers.QuantConv2D) and getattr(quantizer, "precision", None) == 1


def is_binarized(layer: tf.keras.layers.Layer) -> bool:
    """Whether `layer` is a Larq layer with a binary (precision 1) weight quantizer, of any kind."""
    return any(getattr(getattr(layer, attr, None), "precision", None) == 1 for attr in _QUANTIZER_ATTRIBUTES)


def check_binarized_layers_convertible(model: tf.keras.Model, method: str, keep: Iterable[str] = ()) -> None:
    """Check that `method`, which converts binarized `QuantConv2D`s only, can convert
    every binarized layer of `model` that is not named in `keep`.

    A layer left binarized by sign(W) would change what the user asked for without a
    word, so it is an error.

    # Arguments
        model: A Keras model with Larq layers.
        method: The method's name, for the message (`"LNS"`, `"BONN"`).
        keep: Names of binarized layers to leave as they are.

    # Raises
        ValueError: naming every such layer, or the names in `keep` that `model` lacks.
    """
    names = {layer.name for layer in all_layers(model)}
    unknown = sorted(set(keep) - names)
    if unknown:
        raise ValueError(f"keep names layers that {model.name!r} does not have: {unknown}.")
    blocked = [
        f"{layer.name!r} ({type(layer).__name__})"
        for layer in all_layers(model)
        if is_binarized(layer) and not is_binarized_conv(layer) and layer.name not in keep
    ]
    if blocked:
        raise ValueError(
            f"{method} cannot convert the binarized layer(s) {', '.join(blocked)} of {model.name!r}: "
            "it converts binarized QuantConv2D layers only. Express a binary dense layer as "
            "a 1x1 QuantConv2D, or pass keep=[...] with these names to leave them as they are."
        )



def load_model(path: str) -> tf.keras.Model:
    """The Keras model saved at `path` (`.keras`, `.h5`), uncompiled.

    LNS models (`lns_larq.LNSQuantizer`) and BONN models (`lns_larq.bonn.BONNModel`)
    load too: importing `lns_larq` registers their classes.

    ```python
    model = lns_larq.keras_utils.load_model("runs/run/model.keras")
    ```

    # Raises
        ValueError: with a one-line reason if the file is missing or unreadable.
    """
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:
        return tf.keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for unreadable files
        raise ValueError(f"{path}: cannot load the model ({first_line(e)})") from None
