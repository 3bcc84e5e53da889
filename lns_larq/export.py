"""Deployment through Larq Compute Engine (LCE): bake, convert, check, verify.

After training, LNS keeps only the mapped binary weights (paper Sec. 3.2): the
mapping networks \\(f_\\theta\\) are training-time machinery. `bake` folds each LNS
layer into a plain Larq `QuantConv2D` holding those weights, and `export_tflite`
converts the result with LCE and checks that every binary conv became an
`LceBconv2d` (bit-packed XNOR/popcount on ARM):

```python
import lns_larq
from lns_larq import export, models

model = models.get("resnet20_lns", quantizer="dorefa")
report = export.export_tflite(model, "/tmp/resnet20_lns.tflite")
print(report.table())
images, labels = export.cifar10_test_images("../shared/data/cifar10/cifar10_jpegq75.npz", 100)
print(export.verify(model, report.flatbuffer, images, labels))
```
"""

import collections
import dataclasses
import json
import os
import warnings

import larq as lq
import numpy as np
import tensorflow as tf

from lns_larq.lns import _all_layers, clone_nested, is_binarized_conv, lns_layers
from lns_larq.quantizers import quantized_kernel, scale_kind

__all__ = [
    "Agreement",
    "ExportError",
    "ExportReport",
    "bake",
    "cifar10_test_images",
    "deployable_params",
    "export_tflite",
    "float_copy",
    "load_model",
    "op_counts",
    "verify",
]

BCONV_OP = "LceBconv2d"

# Baseline quantizer of each scale kind. Applied to a kernel that already is
# +/- s (s per layer, per output channel, or 1) it returns +/- s again, so the
# baked conv computes what the LNS conv computed, and LCE recognises the
# sign-and-scale pattern it converts to a binary conv.
BAKED_QUANTIZERS = {"layer": "dorefa_sign", "channel": "magnitude_aware_sign", None: "ste_sign"}

# Input quantizers LCE turns into `LceQuantize` (all are sign in the forward pass).
_SIGN_INPUT_QUANTIZERS = (lq.quantizers.SteSign, lq.quantizers.ApproxSign, lq.quantizers.SwishSign)


class ExportError(ValueError):
    """The conversion did not produce one `LceBconv2d` per binary layer.

    `report` holds the `ExportReport` of the failed conversion.
    """

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report


# --------------------------------------------------------------------------- bake


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


def bake(model):
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
    targets = {layer.name: layer for layer in _all_layers(baked)}
    for layer in _all_layers(model):
        target = targets[layer.name]
        if layer.name in mapped:
            target.kernel.latent_variable.assign(quantized_kernel(layer))
            if getattr(layer, "use_bias", False):
                target.bias.assign(layer.bias)
        elif layer.weights:
            _copy_layer_weights(layer, target)
    return baked


def float_copy(model):
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
    targets = {layer.name: layer for layer in _all_layers(copy)}
    for layer in _all_layers(model):
        if layer.weights:
            _copy_layer_weights(layer, targets[layer.name])
    return copy


# ---------------------------------------------------------------- flatbuffer ops


def _operators(flatbuffer):
    """Yield the type name of every operator of every subgraph of a TFLite model."""
    from tensorflow.lite.python import schema_py_generated as schema

    builtin_names = {
        value: name for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_")
    }
    model = schema.Model.GetRootAs(flatbuffer, 0)
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Schema v3a keeps codes < 127 in the deprecated field as well.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.append(code.CustomCode().decode())
        else:
            names.append(builtin_names.get(builtin, f"BUILTIN_{builtin}"))
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            yield names[subgraph.Operators(o).OpcodeIndex()]


def op_counts(flatbuffer):
    """`{op type: number of ops}` of a TFLite flatbuffer, most frequent first.

    A flatbuffer names each custom op once (in its operator codes), so the ops are
    counted by walking the subgraphs, not by searching the bytes.
    """
    return dict(collections.Counter(_operators(flatbuffer)).most_common())


# ------------------------------------------------------------------------ export


def _binary_layers(model):
    return [layer for layer in _all_layers(model) if is_binarized_conv(layer)]


def deployable_params(model):
    """`(binary, float)` parameter counts of a deployable (baked) model.

    Binary: the kernels of binarized convs (1 bit each once bit-packed); float:
    every other weight, batch-normalisation statistics included.
    """
    binary = total = 0
    for layer in _all_layers(model):
        total += sum(int(np.prod(w.shape)) for w in layer.weights)
        if is_binarized_conv(layer):
            binary += int(np.prod(layer.kernel.shape))
    return binary, total - binary


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


@dataclasses.dataclass
class ExportReport:
    """What `export_tflite` produced; `table()` formats it for a terminal."""

    model_name: str
    binary_layers: int
    bconv_ops: int
    op_counts: dict
    size_bytes: int
    float32_size_bytes: int | None
    binary_params: int
    float_params: int
    binary_layer_names: list = dataclasses.field(default_factory=list)
    fallback_layers: list = dataclasses.field(default_factory=list)
    path: str | None = None
    float32_path: str | None = None
    agreement: Agreement | None = None
    flatbuffer: bytes = dataclasses.field(default=b"", repr=False)

    # How `float32_size_bytes` is obtained.
    FLOAT32_METHOD = "float32 TFLite of the same architecture (quantizers removed, same converter)"

    @property
    def size_ratio(self):
        """float32 size / exported size."""
        if not self.float32_size_bytes:
            return None
        return self.float32_size_bytes / self.size_bytes

    @property
    def ok(self):
        return self.bconv_ops == self.binary_layers

    def rows(self):
        rows = [
            ("model", self.model_name),
            ("output", self.path or "(not written)"),
            ("binary layers (Keras)", str(self.binary_layers)),
            (f"{BCONV_OP} ops", f"{self.bconv_ops}  ({'all converted' if self.ok else 'MISMATCH'})"),
            ("ops", ", ".join(f"{name} {n}" for name, n in self.op_counts.items())),
            ("parameters", f"{self.binary_params:,} binary + {self.float_params:,} float"),
            ("file size", _bytes(self.size_bytes)),
        ]
        if self.float32_size_bytes:
            rows.append(("float32 size", f"{_bytes(self.float32_size_bytes)}  ({self.FLOAT32_METHOD})"))
            rows.append(("size ratio", f"{self.size_ratio:.1f}x smaller than float32"))
        if self.fallback_layers:
            rows.append(("fell back to float", ", ".join(self.fallback_layers)))
        if self.agreement is not None:
            a = self.agreement
            rows.append(("verified on", f"{a.n} images (Keras vs LCE interpreter)"))
            rows.append(("top-1 agreement", f"{100 * a.top1_agreement:.2f}%"))
            rows.append(("max |logit diff|", f"{a.max_abs_logit_diff:.3g}"))
            rows.append((f"logits within {a.atol:g}", f"{100 * a.close_fraction:.2f}% of images"))
            if a.keras_accuracy is not None:
                accuracies = f"Keras {100 * a.keras_accuracy:.2f}%, LCE {100 * a.lce_accuracy:.2f}%"
                rows.append(("accuracy", accuracies))
        return rows

    def table(self):
        rows = self.rows()
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    def to_json(self):
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "flatbuffer"}
        return json.dumps({**fields, "size_ratio": self.size_ratio}, indent=2)


def _bytes(n):
    return f"{n / 1024:,.1f} KiB ({n:,} bytes)"


def _fallback_reason(layer):
    """A likely reason why LCE kept `layer` as a float conv."""
    quantizer = layer.input_quantizer
    if quantizer is None:
        return "its input is not binarized (input_quantizer=None)"
    if not isinstance(quantizer, _SIGN_INPUT_QUANTIZERS):
        return f"its input quantizer {type(quantizer).__name__} is not a sign LCE recognises"
    if getattr(layer, "groups", 1) != 1:
        return f"grouped convolution (groups={layer.groups})"
    kernel = np.abs(quantized_kernel(layer).numpy())
    per_channel = kernel.reshape(-1, kernel.shape[-1])
    if not np.allclose(per_channel, per_channel[:1], rtol=1e-5):
        return "its quantized kernel is not +/- one scale per output channel"
    return "unknown (LCE kept a float conv)"


def _converts_alone(layer):
    """Whether `layer`, in a model of its own, converts to an `LceBconv2d`; `None`
    if it cannot be isolated (no single input shape)."""
    import larq_compute_engine as lce

    try:
        inputs = tf.keras.Input(layer.input_shape[1:])
    except (AttributeError, RuntimeError):
        return None
    copy = layer.__class__.from_config(layer.get_config())
    model = tf.keras.Model(inputs, copy(inputs))
    copy.set_weights(layer.get_weights())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return op_counts(lce.convert_keras_model(model)).get(BCONV_OP, 0) == 1


def fallback_layers(model):
    """`[(name, reason)]` of the binary layers of `model` LCE keeps in float.

    Converts each binary layer in a model of its own: the conversion of the whole
    model only tells how many convs fell back, not which.
    """
    return [
        (layer.name, _fallback_reason(layer))
        for layer in _binary_layers(model)
        if _converts_alone(layer) is False
    ]


def export_tflite(model, path=None, *, float_reference=True, float_path=None):
    r"""Convert `model` with LCE, check every binary conv converted, write `path`.

    LNS models are baked first (`bake`). LCE turns a conv into an `LceBconv2d` only
    when its input comes from a sign and its filter is a constant \(\pm s\) with
    one \(s\) per output channel; anything else silently stays a float conv. So the
    number of `LceBconv2d` ops must equal the number of binarized convs of the
    Keras model, or `ExportError` names the layers that fell back (each is
    converted on its own to find them). A model without binary layers is exported
    with a warning.

    ```python
    report = lns_larq.export.export_tflite(model, "model.tflite")
    assert report.bconv_ops == report.binary_layers
    print(report.table())
    ```

    # Arguments
        model: A Keras model with Larq layers (LNS or not).
        path: Where to write the flatbuffer; `None` to write nothing.
        float_reference: Also convert `float_copy(model)` and report its size.
        float_path: Where to write that float32 flatbuffer (for
            `train/benchmark_tflite.py`); `None` to keep it in memory only.

    # Returns
        An `ExportReport`; its `flatbuffer` field holds the converted bytes.

    # Raises
        ExportError: if `LceBconv2d` ops != binary layers; nothing is written.
    """
    import larq_compute_engine as lce

    deployable = bake(model) if lns_layers(model) else model
    binary = _binary_layers(deployable)
    if not binary:
        warnings.warn(
            f"Model {model.name!r} has no binary layer (binarized QuantConv2D): the "
            "export is a plain float TFLite model with no LceBconv2d.",
            stacklevel=2,
        )
    flatbuffer = lce.convert_keras_model(deployable)
    float_flatbuffer = lce.convert_keras_model(float_copy(deployable)) if float_reference else None
    counts = op_counts(flatbuffer)
    binary_params, float_params = deployable_params(deployable)
    report = ExportReport(
        model_name=model.name,
        binary_layers=len(binary),
        bconv_ops=counts.get(BCONV_OP, 0),
        op_counts=counts,
        size_bytes=len(flatbuffer),
        float32_size_bytes=len(float_flatbuffer) if float_flatbuffer else None,
        binary_params=binary_params,
        float_params=float_params,
        binary_layer_names=[layer.name for layer in binary],
        flatbuffer=flatbuffer,
    )
    if not report.ok:
        fallen = fallback_layers(deployable)
        report.fallback_layers = [name for name, _ in fallen]
        details = "; ".join(f"{name}: {reason}" for name, reason in fallen) or (
            "no single layer fails on its own, the fallback depends on its context"
        )
        raise ExportError(
            f"LCE converted {report.bconv_ops} of the {report.binary_layers} binary layers "
            f"of {model.name!r} to {BCONV_OP}; fell back to float: {details}. Nothing "
            "was written.",
            report,
        )
    for target, data in ((path, flatbuffer), (float_path, float_flatbuffer)):
        if target and data:
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
    report.path = path
    report.float32_path = float_path if float_flatbuffer else None
    return report


# ------------------------------------------------------------------------ verify


def load_model(path):
    """The Keras model saved at `path` (`.keras`, `.h5`), uncompiled.

    # Raises
        ValueError: with a one-line reason if the file is missing or unreadable.
    """
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:
        return tf.keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for unreadable files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: cannot load the model ({reason})") from None


def interpreter(flatbuffer, num_threads=1):
    """LCE's interpreter with its fast paths (indirect BGEMM, XNNPack for float ops).

    Without them binary convs take LCE's slow reference path.
    """
    import larq_compute_engine as lce

    return lce.testing.Interpreter(
        flatbuffer, num_threads=num_threads, use_reference_bconv=False,
        use_indirect_bgemm=True, use_xnnpack=True,
    )


def verify(model, flatbuffer, images, labels=None, num_threads=1, atol=1e-3):
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


def cifar10_test_images(data_path, n, validation_size=0, train_subset=0):
    """The first `n` CIFAR-10 test images, normalised as training normalised them.

    Normalisation statistics come from the training images `lns_larq.data.pipelines`
    used (pass the run's `validation_size`/`train_subset`).
    """
    from lns_larq import data

    arrays = data.load("cifar10", data_path=data_path)
    arrays.x_test, arrays.y_test = arrays.x_test[:n], arrays.y_test[:n]
    _, _, test = data.pipelines(
        arrays, batch_size=max(n, 1), validation_size=validation_size,
        train_subset=train_subset, augment=False,
    )
    images, labels = next(iter(test))
    return images.numpy(), labels.numpy()
