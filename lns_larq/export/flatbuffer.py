"""Inspection of a TFLite flatbuffer: its ops (`op_counts`) and the binary filters of
its `LceBconv2d` ops (`bconv_filter_signs`), read with TensorFlow Lite's schema.

```python
flatbuffer = lns_larq.export.export_tflite(model).flatbuffer
lns_larq.export.op_counts(flatbuffer)  # {"LceBconv2d": 18, "LceQuantize": 18, ...}
```
"""

import collections
from collections.abc import Iterator

import numpy as np

__all__ = ["BCONV_OP", "bconv_filter_signs", "op_counts"]

BCONV_OP = "LceBconv2d"


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


def op_counts(flatbuffer: bytes) -> dict[str, int]:
    """`{op type: number of ops}` of a TFLite flatbuffer, most frequent first.

    A flatbuffer names each custom op once (in its operator codes), so the ops are
    counted by walking the subgraphs, not by searching the bytes.
    """
    return dict(collections.Counter(name for name, *_ in _ops(flatbuffer)).most_common())


def bconv_filter_signs(flatbuffer: bytes) -> Iterator[np.ndarray]:
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
