"""Conversion with Larq Compute Engine, checked: `export_tflite` and its `ExportReport`.

```python
report = lns_larq.export.export_tflite(model, "model.tflite")
print(report.table())
```
"""

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

from lns_larq.errors import first_line
from lns_larq.export.baking import bake, constant_kernels, deployable_params, float_copy
from lns_larq.export.flatbuffer import BCONV_OP, bconv_filter_signs, op_counts
from lns_larq.export.verification import Agreement
from lns_larq.keras_utils import all_layers, is_binarized
from lns_larq.quantizers import lns_layers, quantized_kernel

__all__ = ["ExportError", "ExportReport", "export_tflite", "unconverted_layers"]

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


def _binary_layers(model):
    """The Larq layers of `model` with a 1-bit weight quantizer, of any layer type."""
    return [layer for layer in all_layers(model) if is_binarized(layer)]


def _kernel_signs(layer):
    """`sign(Q(W)) < 0` of a binary `QuantConv2D` in LCE's filter layout (OHWI), else None."""
    if not isinstance(layer, lq.layers.QuantConv2D) or len(layer.kernel.shape) != 4:
        return None
    return np.transpose(quantized_kernel(layer).numpy() < 0, (3, 0, 1, 2))


def unconverted_layers(model: tf.keras.Model, flatbuffer: bytes) -> list[str]:
    r"""Names of the binary layers of `model` that no `LceBconv2d` of `flatbuffer` computes.

    Each `LceBconv2d` holds the signs of its layer's filter, so a layer converted
    if an unclaimed op's filter has exactly the signs of its quantized kernel,
    \(\mathrm{sign}(Q(W))\). (Tensor names do not tell: LCE names a tensor after
    the ops it fused, truncated to 50 characters.) A binary layer that is not a
    `QuantConv2D` never matches: `LceBconv2d` is LCE's only binary op.
    """
    filters = list(bconv_filter_signs(flatbuffer))
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
    def size_ratio(self) -> float | None:
        """float32 size / exported size."""
        if not self.float32_size_bytes:
            return None
        return self.float32_size_bytes / self.size_bytes

    @property
    def ok(self) -> bool:
        return not self.unconverted and self.bconv_ops == self.binary_layers

    def rows(self) -> list[tuple[str, str]]:
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

    def table(self) -> str:
        rows = self.rows()
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    def to_json(self) -> str:
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

    Converts from a SavedModel, as `lce.convert_keras_model` tries first; only a
    model that cannot be saved takes its other path, from a frozen graph, where a
    converter failure can end the process instead of raising (`docs/design.md`).
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
                f"LCE could not convert {what}: {type(e).__name__}: {first_line(e)}"
            ) from None


def export_tflite(model: tf.keras.Model, path: str | None = None, *, float_reference: bool = True,
                  float_path: str | None = None) -> ExportReport:
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
        unconverted=unconverted_layers(deployable, flatbuffer),
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
