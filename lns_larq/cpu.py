"""The CPU a measurement ran on, and whether TensorFlow's oneDNN kernels are on.

Every wall time this project reports names the CPU model, its core count and the
oneDNN state, because these decide it: on a 2-core AVX2 CPU a ResNet-20 training
step (batch 128) took 716 ms with oneDNN off and 453 ms with it on (issue 21).

```python
from lns_larq import cpu

print(cpu.describe())  # e.g. "AMD EPYC (family 25 model 17), AVX-512, 2 cores, oneDNN on"
```
"""

import ctypes
import os

__all__ = ["cores", "describe", "has_avx512", "model_name", "onednn_enabled"]


def _cpuinfo():
    """The fields of /proc/cpuinfo, one dict per logical CPU ([] where unreadable)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return []
    processors = []
    for block in text.strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        processors.append(fields)
    return processors


def model_name():
    """The CPU's model name, with family and model number where the name alone is
    vague (virtual machines often report just "AMD EPYC")."""
    info = _cpuinfo()
    if not info:
        import platform

        return platform.processor() or platform.machine() or "unknown CPU"
    first = info[0]
    name = first.get("model name", "unknown CPU")
    if "cpu family" in first and "model" in first:
        name += f" (family {first['cpu family']} model {first['model']})"
    return name


def cores():
    """Physical cores available to this process (logical CPUs where the topology is
    not readable)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = _cpuinfo()
    physical = {(p.get("physical id"), p.get("core id")) for p in info if "core id" in p}
    if physical and len(info) == (os.cpu_count() or 0):
        # Hyper-threads share a core: scale the affinity by threads per core.
        return max(1, logical * len(physical) // len(info))
    return logical or 1


def has_avx512():
    """Whether the CPU has AVX-512 (TensorFlow 2.16 turns oneDNN on by default only then)."""
    info = _cpuinfo()
    return bool(info) and "avx512f" in info[0].get("flags", "").split()


def onednn_enabled():
    """Whether TensorFlow's kernels run with oneDNN (`TF_ENABLE_ONEDNN_OPTS`).

    Asks TensorFlow's framework library, which reads the variable when TensorFlow
    loads. The Python binding `_pywrap_util_port.IsMklEnabled()` carries its own copy
    of that check and reads the variable at its first call instead, so it reports a
    change made after TensorFlow loaded that the kernels never saw; it is the
    fallback where the framework's symbol is not found.
    """
    import tensorflow as tf

    try:
        framework = ctypes.CDLL(os.path.join(os.path.dirname(tf.__file__), "libtensorflow_framework.so.2"))
        check = framework._ZN10tensorflow12IsMKLEnabledEv  # bool tensorflow::IsMKLEnabled()
    except (OSError, AttributeError):
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    check.restype = ctypes.c_bool
    return bool(check())


def describe():
    """One line for a report: model, cores, AVX-512 or not, oneDNN on or off, and
    the instruction set oneDNN is capped at, if `ONEDNN_MAX_CPU_ISA` caps it (e.g.
    `AVX2` on an AVX-512 CPU, to time oneDNN's code for AVX2-only CPUs)."""
    avx = "AVX-512" if has_avx512() else "no AVX-512"
    onednn = "on" if onednn_enabled() else "off"
    line = f"{model_name()}, {avx}, {cores()} cores, oneDNN {onednn}"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip()
    if cap and cap.upper() != "ALL" and onednn == "on":
        line += f" (its ISA capped at {cap} by ONEDNN_MAX_CPU_ISA)"
    return line
