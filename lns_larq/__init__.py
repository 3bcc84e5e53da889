"""lns-larq: Learning with Noisy Supervision (Han et al., ICML 2020) on Larq.

Importing the package selects Keras 2 (`tf_keras`), which Larq needs, by setting
`TF_USE_LEGACY_KERAS=1` before TensorFlow is imported, and turns TensorFlow's oneDNN
kernels on (`TF_ENABLE_ONEDNN_OPTS=1`) unless the environment already sets it.
"""

import os
import sys

# Both settings below are read when TensorFlow loads; a TensorFlow imported before
# this package keeps what it read (see _notice_if_onednn_off).
_TENSORFLOW_IMPORTED_FIRST = "tensorflow" in sys.modules
_ONEDNN_CHOSEN_BY_USER = "TF_ENABLE_ONEDNN_OPTS" in os.environ

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow 2.16 turns oneDNN on by default only on CPUs with AVX-512. On a 2-core
# AMD EPYC with AVX2 only (Zen 3), oneDNN made a ResNet-20 training step at batch
# 128 1.58x faster (716 -> 453 ms) and the LNS step 1.63x (825 -> 507 ms); see
# docs/benchmarks.md. TF_ENABLE_ONEDNN_OPTS=0 in the environment still turns it off.
if not _TENSORFLOW_IMPORTED_FIRST:
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# TensorFlow's C++ info and warning logs (CPU instruction sets, oneDNN, the
# "End of sequence" rendezvous note of every epoch) are hidden unless the user
# sets TF_CPP_MIN_LOG_LEVEL; errors still print.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Printed at import by the CUDA-enabled TensorFlow wheel, GPU or not, because its
# CUDA plugins register twice (tensorflow/tensorflow#62075); harmless, and the only
# "errors" of a healthy CPU run.
_KNOWN_IMPORT_NOISE = ("Unable to register cuFFT factory", "Unable to register cuDNN factory",
                       "Unable to register cuBLAS factory")


def _import_tensorflow_without_known_noise():
    """Import TensorFlow with file descriptor 2 captured, then replay every captured
    line except the known-harmless ones: nothing else TensorFlow prints is lost."""
    if "tensorflow" in sys.modules:
        return
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters)
        import tensorflow  # noqa: F401
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not any(n in line for n in _KNOWN_IMPORT_NOISE))
            if kept:
                os.write(2, kept.encode())


_import_tensorflow_without_known_noise()


def _notice_if_onednn_off():
    # Setting TF_ENABLE_ONEDNN_OPTS now would not reach TensorFlow's kernels, which
    # read it when TensorFlow loaded; say once, on one line, why training may run slow.
    if not _TENSORFLOW_IMPORTED_FIRST or _ONEDNN_CHOSEN_BY_USER:
        return
    from lns_larq import cpu

    if not cpu.onednn_enabled():
        sys.stderr.write(
            "lns_larq: TensorFlow was imported before lns_larq, so its oneDNN kernels stay off "
            "(training steps up to 1.6x slower); import lns_larq first or set "
            "TF_ENABLE_ONEDNN_OPTS=1 (0 keeps them off without this notice).\n"
        )


_notice_if_onednn_off()


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


def _autograph_skips_keras_2():
    # AutoGraph's conversion rules skip the `tensorflow` and `keras` packages, whose
    # code is graph-ready, but not `tf_keras`, where Keras 2 lives since TF 2.16:
    # every trace then transpiles Keras's own training loop and layer machinery
    # (measured: 28 s of a 48 s ResNet-20 run). The rule restores what Keras 2 had
    # under the name `keras`. Layers' `call` methods (ours, Larq's) are still
    # converted: Keras converts them explicitly when it calls them.
    try:
        from tensorflow.python.autograph.core import config
    except ImportError:  # a TensorFlow without this private module: only slower
        return
    if not any(getattr(rule, "_prefix", None) == "tf_keras" for rule in config.CONVERSION_RULES):
        config.CONVERSION_RULES = (config.DoNotConvert("tf_keras"),) + tuple(config.CONVERSION_RULES)


_autograph_skips_keras_2()

from lns_larq import bonn, losses, models, noisy_filters, quantizers  # noqa: E402
from lns_larq.lns import lnsify  # noqa: E402
from lns_larq.quantizers import LNSQuantizer  # noqa: E402

__version__ = "0.1.0"
__all__ = ["LNSQuantizer", "bonn", "lnsify", "losses", "models", "noisy_filters", "quantizers", "__version__"]
