"""Deployment through Larq Compute Engine (LCE): bake, convert, check, verify.

After training, LNS keeps only the mapped binary weights (paper Sec. 3.2): the
mapping networks \\(f_\\theta\\) are training-time machinery. `bake` folds each LNS
layer into a plain Larq `QuantConv2D` holding those weights, and `export_tflite`
converts the result with LCE and checks that every binary layer became an
`LceBconv2d` (bit-packed XNOR/popcount on ARM), naming those that did not:

```python
import lns_larq
from lns_larq import data, export, models

model = models.get("resnet20_lns", quantizer="dorefa")
report = export.export_tflite(model, "/tmp/resnet20_lns.tflite")
print(report.table())
images, labels = data.cifar10_test_images("../shared/data/cifar10/cifar10_jpegq75.npz", 100)
print(export.verify(model, report.flatbuffer, images, labels))
```

The modules: `baking` (`bake`, `constant_kernels`, `float_copy`,
`deployable_params`), `conversion` (`export_tflite`, its `ExportReport` and
`ExportError`), `flatbuffer` (`op_counts`, the filters of `LceBconv2d` ops) and
`verification` (`verify`, `interpreter`).
"""

from lns_larq.data import cifar10_test_images
from lns_larq.export.baking import BAKED_QUANTIZERS, bake, constant_kernels, deployable_params, float_copy
from lns_larq.export.conversion import ExportError, ExportReport, export_tflite
from lns_larq.export.flatbuffer import BCONV_OP, op_counts
from lns_larq.export.verification import Agreement, interpreter, verify
from lns_larq.keras_utils import load_model

__all__ = [
    "Agreement",
    "BAKED_QUANTIZERS",
    "BCONV_OP",
    "ExportError",
    "ExportReport",
    "bake",
    "cifar10_test_images",
    "constant_kernels",
    "deployable_params",
    "export_tflite",
    "float_copy",
    "interpreter",
    "load_model",
    "op_counts",
    "verify",
]
