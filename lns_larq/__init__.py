"""lns-larq: Learning with Noisy Supervision (Han et al., ICML 2020) on Larq.

Importing the package selects Keras 2 (`tf_keras`), which Larq needs, by setting
`TF_USE_LEGACY_KERAS=1` before TensorFlow is imported.
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _check_keras_2():
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return
    keras_module = getattr(tf.keras, "__name__", "")
    if not keras_module.startswith("tf_keras"):
        raise ImportError(
            f"TensorFlow was imported with Keras 3 active ({keras_module}); lns_larq "
            "and Larq need Keras 2. Set TF_USE_LEGACY_KERAS=1, or import lns_larq "
            "before TensorFlow."
        )


_check_keras_2()

def _mark_larq_not_convertible():
    # AutoGraph cannot parse larq's QuantizedVariable.from_variable (a classmethod
    # whose source it fails on) and prints a multi-line "please report this"
    # warning in every training run. TensorFlow's own advice is to mark such a
    # function do_not_convert; it then runs as-is, exactly as it did after the warning.
    import tensorflow as tf
    from larq.quantized_variable import QuantizedVariable

    func = QuantizedVariable.from_variable.__func__
    QuantizedVariable.from_variable = classmethod(tf.autograph.experimental.do_not_convert(func))


_mark_larq_not_convertible()

from lns_larq import losses, noisy_filters, quantizers  # noqa: E402
from lns_larq.lns import lnsify  # noqa: E402
from lns_larq.quantizers import LNSQuantizer  # noqa: E402
from lns_larq import bonn  # noqa: E402  (registers the <model>_bonn variants)

__version__ = "0.1.0"
__all__ = ["LNSQuantizer", "bonn", "lnsify", "losses", "noisy_filters", "quantizers", "__version__"]
