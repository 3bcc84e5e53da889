"""Deployment through Larq Compute Engine (LCE): bake, convert, check, verify.

After training, LNS keeps only the mapped binary weights (paper Sec. 3.2): the
mapping networks \\(f_\\theta\\) are training-time machinery. `bake` folds each LNS
layer into a plain Larq `QuantConv2D` holding those weights, and `export_tflite`
converts the result with LCE and checks that every binary layer became an
`LceBconv2d` (bit-packed XNOR/popcount on ARM), naming those that did not:

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
import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import warnings

import larq as lq
import numpy as np
import tensorflow as tf

from lns_larq.keras_utils import all_layers, clone_nested, is_binarized
from lns_larq.quantizers import lns_layers, quantized_kernel, scale_kind

__all__ = [
    "Agreement",
    "ExportError",
    "ExportReport",
    "bake",
    "cifar10_test_images",
    "constant_kernels",
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
    """The conversion failed, or did not produce one `LceBconv2d` per binary layer.

    The message is one line naming the model and the cause; `report` holds the
    `ExportReport` of a conversion that ran but left binary layers in float
    (`report.unconverted`), `None` if the converter itself failed.
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
    targets = {layer.name: layer for layer in all_layers(copy)}
    for layer in all_layers(model):
        if layer.weights:
            _copy_layer_weights(layer, targets[layer.name])
    return copy


def _has_binary_kernel(layer):
    return getattr(getattr(layer, "kernel_quantizer", None), "precision", None) == 1


def constant_kernels(model):
    r"""A copy of `model` whose binary kernels are constants \(K = Q(W)\), without quantizer.

    Each layer with a 1-bit `kernel_quantizer` gets as its kernel the \(\pm s\)
    values it multiplies with in inference (for DoReFa, \(K = \overline{|W|}\,
    \mathrm{sign}(W)\)), and no kernel quantizer or constraint; its input quantizer
    stays. The copy computes what `model` computes. `export_tflite` converts it,
    because TensorFlow folds an op into a constant only if its operands hold at
    most \(2^{30}\) bits (`kOperandsSizeThreshold` of its constant-folding
    policy): the quantizer of a kernel of more than \(2^{25}\) float32 weights
    stays in the graph as SIGN, MEAN and MUL ops, so LCE sees no constant filter.
    AlexNet's fc6, \(6\cdot 6\cdot 256\cdot 4096 \approx 3.8\cdot 10^7\) weights,
    then stays a float CONV_2D; as a binary `QuantDense` it crashes the converter
    (`ValueError: cannot create std::vector larger than max_size()`; TensorFlow
    2.16, LCE 0.16). A constant filter converts at any size. LNS layers are baked
    first.

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


# ---------------------------------------------------------------- flatbuffer ops


def _opcode_names(model):
    """Type name of each operator code of a parsed TFLite `model`."""
    from tensorflow.lite.python import schema_py_generated as schema

    builtin_names = {
        value: name for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_")
    }
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Schema v3a keeps codes < 127 in the deprecated field as well.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.append(code.CustomCode().decode())
        else:
            names.append(builtin_names.get(builtin, f"BUILTIN_{builtin}"))
    return names


def _ops(flatbuffer):
    """Yield `(type name, operator, subgraph, model)` for every operator of a TFLite model."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    names = _opcode_names(model)
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(o)
            yield names[op.OpcodeIndex()], op, subgraph, model


def op_counts(flatbuffer):
    """`{op type: number of ops}` of a TFLite flatbuffer, most frequent first.

    A flatbuffer names each custom op once (in its operator codes), so the ops are
    counted by walking the subgraphs, not by searching the bytes.
    """
    return dict(collections.Counter(name for name, *_ in _ops(flatbuffer)).most_common())


def _bconv_filter_signs(flatbuffer):
    """Yield the filter of every `LceBconv2d` as booleans `(c_out, kh, kw, bits)`,
    True where the weight is negative.

    LCE bit-packs a binary filter along its input channels: 32 weights per int32
    word, least significant bit first, bit 1 for -1. `bits` is a multiple of 32;
    the bits past `c_in` pad the last word.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    for name, op, subgraph, model in _ops(flatbuffer):
        if name != BCONV_OP:
            continue
        tensor = subgraph.Tensors(op.Inputs(1))
        buffer = model.Buffers(tensor.Buffer())
        if buffer.DataLength():
            data = buffer.DataAsNumpy().tobytes()
        else:  # files over 2 GB keep buffers after the flatbuffer, by offset
            data = bytes(flatbuffer[buffer.Offset(): buffer.Offset() + buffer.Size()])
        if not data:  # not a constant filter: no layer's signs to compare
            continue
        shape = tuple(tensor.ShapeAsNumpy())
        if tensor.Type() == schema.TensorType.FLOAT32:  # not bit-packed
            yield np.frombuffer(data, "<f4").reshape(shape) < 0
        else:
            words = np.frombuffer(data, "<i4").reshape(shape)
            bits = np.unpackbits(words.view(np.uint8), axis=-1, bitorder="little")
            yield bits.astype(bool)


def _kernel_signs(layer):
    """`sign(Q(W)) < 0` of a binary `QuantConv2D` in LCE's filter layout (OHWI), else None."""
    if not isinstance(layer, lq.layers.QuantConv2D) or len(layer.kernel.shape) != 4:
        return None
    return np.transpose(quantized_kernel(layer).numpy() < 0, (3, 0, 1, 2))


def _unconverted(model, flatbuffer):
    r"""Names of the binary layers of `model` that no `LceBconv2d` of `flatbuffer` computes.

    Each `LceBconv2d` holds the signs of its layer's filter, so a layer converted
    if an unclaimed op's filter has exactly the signs of its quantized kernel,
    \(\mathrm{sign}(Q(W))\). (Tensor names do not tell: LCE names a tensor after
    the ops it fused, truncated to 50 characters.) A binary layer that is not a
    `QuantConv2D` never matches: `LceBconv2d` is LCE's only binary op.
    """
    filters = list(_bconv_filter_signs(flatbuffer))
    missing = []
    for layer in _binary_layers(model):
        signs = _kernel_signs(layer)
        match = None if signs is None else next(
            (i for i, f in enumerate(filters)
             if f.shape[:3] == signs.shape[:3] and f.shape[3] >= signs.shape[3]
             and np.array_equal(f[..., : signs.shape[3]], signs)),
            None,
        )
        if match is None:
            missing.append(layer.name)
        else:
            del filters[match]
    return missing


# ------------------------------------------------------------------------ export


def _binary_layers(model):
    """The Larq layers of `model` with a 1-bit weight quantizer, of any layer type."""
    return [layer for layer in all_layers(model) if is_binarized(layer)]


# The weight each Larq weight quantizer quantizes.
_QUANTIZED_WEIGHTS = {
    "kernel_quantizer": "kernel",
    "depthwise_quantizer": "depthwise_kernel",
    "pointwise_quantizer": "pointwise_kernel",
}


def deployable_params(model):
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
    """What `export_tflite` produced; `table()` formats it for a terminal.

    `binary_layers` counts every Larq layer with a 1-bit weight quantizer
    (`QuantConv2D`, `QuantDense`, depthwise...), `unconverted` names those that
    did not become an `LceBconv2d`.
    """

    model_name: str
    binary_layers: int
    bconv_ops: int
    op_counts: dict
    size_bytes: int
    float32_size_bytes: int | None
    binary_params: int
    float_params: int
    binary_layer_names: list = dataclasses.field(default_factory=list)
    unconverted: list = dataclasses.field(default_factory=list)
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
        return not self.unconverted and self.bconv_ops == self.binary_layers

    def rows(self):
        status = "all converted" if self.ok else f"{len(self.unconverted)} of {self.binary_layers} not converted"
        rows = [
            ("model", self.model_name),
            ("output", self.path or "(not written)"),
            ("binary layers (Keras)", str(self.binary_layers)),
            (f"{BCONV_OP} ops", f"{self.bconv_ops}  ({status})"),
        ]
        if self.unconverted:
            rows.append(("not converted", ", ".join(self.unconverted)))
        rows += [
            ("ops", ", ".join(f"{name} {n}" for name, n in self.op_counts.items())),
            ("parameters", f"{self.binary_params:,} binary + {self.float_params:,} float"),
            ("file size", _bytes(self.size_bytes)),
        ]
        if self.float32_size_bytes:
            rows.append(("float32 size", f"{_bytes(self.float32_size_bytes)}  ({self.FLOAT32_METHOD})"))
            rows.append(("size ratio", f"{self.size_ratio:.1f}x smaller than float32"))
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


def _unconverted_reason(layer):
    """A likely reason why LCE did not make `layer` an `LceBconv2d`."""
    if isinstance(layer, lq.layers.QuantDense):
        return "LCE has no binary dense op (write it as a QuantConv2D, as models.alexnet does)"
    if not isinstance(layer, lq.layers.QuantConv2D):
        return f"LCE has no binary op for {type(layer).__name__}"
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


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class _DropMessage(logging.Filter):
    def __init__(self, start):
        super().__init__()
        self.start = start

    def filter(self, record):
        return not record.getMessage().startswith(self.start)


@contextlib.contextmanager
def _no_false_compile_warning(model):
    """Drop tf_keras's "Compiled the loaded model, but the compiled metrics have yet
    to be built" while saving an *uncompiled* model.

    tf_keras's legacy `save` builds the compiled metrics first and logs that
    warning when it cannot, which for a model never compiled (what export
    converts) is always the case and says nothing true. Compiled models keep it.
    """
    if getattr(model, "compiled_loss", None) is not None:
        yield
        return
    logger = tf.get_logger()
    message = _DropMessage("Compiled the loaded model, but the compiled metrics")
    logger.addFilter(message)
    try:
        yield
    finally:
        logger.removeFilter(message)


def _convert(model, what):
    """`model` converted by LCE; `ExportError` (one line naming `what`) if LCE fails.

    Converts from a SavedModel, as `lce.convert_keras_model` tries first. When
    that conversion fails, `convert_keras_model` retries from a frozen graph,
    which reaches the same converter passes; measured on the 224 x 224 AlexNet
    with a binary `QuantDense` fc6, the retry killed the process (SIGSEGV)
    instead of raising. So only a model that cannot be saved takes that path.
    """
    import larq_compute_engine as lce

    with tempfile.TemporaryDirectory() as folder:
        try:
            with _no_false_compile_warning(model):
                model.save(folder, save_format="tf")
        except Exception:  # not saveable: LCE's frozen-graph path is the only one
            folder = None
        try:
            if folder is None:
                return lce.convert_keras_model(model)
            return lce.convert_saved_model(folder)
        except Exception as e:  # the converter's C++ errors arrive as any type
            raise ExportError(
                f"LCE could not convert {what}: {type(e).__name__}: {_first_line(e)}"
            ) from None


def export_tflite(model, path=None, *, float_reference=True, float_path=None):
    r"""Convert `model` with LCE, check every binary layer converted, write `path`.

    LNS models are baked first (`bake`), binary kernels made constants
    (`constant_kernels`, which large layers need). LCE turns a conv into an
    `LceBconv2d` only when its input comes from a sign and its filter is a
    constant \(\pm s\) with one \(s\) per output channel; anything else silently
    stays float, and a binary `QuantDense` always does (LCE has no binary dense
    op). So every Larq layer with a 1-bit weight quantizer must be found, by its
    filter's signs, in an `LceBconv2d` of the flatbuffer, or `ExportError` names
    the layers left in float (`report.unconverted`) with a likely reason. A model
    without binary layers is exported with a warning.

    ```python
    report = lns_larq.export.export_tflite(model, "model.tflite")
    assert report.ok and report.unconverted == []
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
        ExportError: if a binary layer did not convert, or LCE failed (one line
            naming the model and the cause); nothing is written.
    """
    deployable = bake(model) if lns_layers(model) else model
    binary = _binary_layers(deployable)
    if not binary:
        warnings.warn(
            f"Model {model.name!r} has no binary layer (a Larq layer with a 1-bit "
            "weight quantizer): the export is a plain float TFLite model with no "
            "LceBconv2d.",
            stacklevel=2,
        )
    flatbuffer = _convert(constant_kernels(deployable), repr(model.name))
    float_flatbuffer = None
    if float_reference:
        float_flatbuffer = _convert(
            float_copy(deployable),
            f"the float32 reference of {model.name!r} (float_reference=False skips it)",
        )
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
        unconverted=_unconverted(deployable, flatbuffer),
        flatbuffer=flatbuffer,
    )
    if not report.ok:
        layers = {layer.name: layer for layer in binary}
        details = "; ".join(f"{name}: {_unconverted_reason(layers[name])}" for name in report.unconverted)
        raise ExportError(
            f"LCE converted {report.bconv_ops} of the {report.binary_layers} binary layers "
            f"of {model.name!r} to {BCONV_OP}; not converted: {details or 'none identified'}. "
            "Nothing was written.",
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
