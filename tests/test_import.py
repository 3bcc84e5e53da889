"""What `import lns_larq` sets before TensorFlow loads: oneDNN on unless the user
chose otherwise, and one notice when TensorFlow was imported first with oneDNN off.

Each case runs in a fresh interpreter, because TensorFlow reads
`TF_ENABLE_ONEDNN_OPTS` once, when it loads. The checks hold on any x86 CPU: on one
without AVX-512 TensorFlow's own default is off, so "on after import lns_larq" is
the package's doing; on one with it, the environment variable the package set is
checked as well.
"""

import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT

NOTICE = "lns_larq: TensorFlow was imported before lns_larq"

REPORT = """
import json, os
from tensorflow.python.util import _pywrap_util_port
from lns_larq import cpu
print("REPORT " + json.dumps({
    "variable": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
    "framework": cpu.onednn_enabled(),
    "python_binding": bool(_pywrap_util_port.IsMklEnabled()),
}))
"""

# TensorFlow loads first with oneDNN as `variable` says; the variable is then
# removed, so that lns_larq sees a user who did not choose.
TENSORFLOW_FIRST = """
import os
import tensorflow
del os.environ["TF_ENABLE_ONEDNN_OPTS"]
import lns_larq
import lns_larq.training, lns_larq.data  # more of the package: still one notice
from lns_larq import cpu
print("REPORT " + str(cpu.onednn_enabled()).lower())
"""


def _start(code, variable):
    env = dict(os.environ)
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if variable is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = variable
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _report(process):
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    lines = [line for line in stdout.splitlines() if line.startswith("REPORT ")]
    assert len(lines) == 1, stdout
    return json.loads(lines[0][len("REPORT "):]), stderr


@pytest.fixture(scope="module")
def processes():
    """All cases at once (each is mostly TensorFlow's import)."""
    return {
        "unset": _start("import lns_larq\n" + REPORT, None),
        "off": _start("import lns_larq\n" + REPORT, "0"),
        "tensorflow_first_off": _start(TENSORFLOW_FIRST, "0"),
        "tensorflow_first_on": _start(TENSORFLOW_FIRST, "1"),
    }


def test_onednn_is_on_after_import_unless_the_user_chose(processes):
    report, stderr = _report(processes["unset"])
    assert report == {"variable": "1", "framework": True, "python_binding": True}
    assert NOTICE not in stderr
    # The user's 0 wins, silently.
    report, stderr = _report(processes["off"])
    assert report == {"variable": "0", "framework": False, "python_binding": False}
    assert NOTICE not in stderr


def test_tensorflow_imported_first_with_onednn_off_is_said_once(processes):
    enabled, stderr = _report(processes["tensorflow_first_off"])
    assert enabled is False  # the kernels keep what TensorFlow read when it loaded
    notices = [line for line in stderr.splitlines() if NOTICE in line]
    assert len(notices) == 1, stderr[-3000:]
    assert "import lns_larq first or set TF_ENABLE_ONEDNN_OPTS=1" in notices[0]
    # With oneDNN already on there is nothing to say.
    enabled, stderr = _report(processes["tensorflow_first_on"])
    assert enabled is True
    assert NOTICE not in stderr


def test_cpu_description_names_model_cores_and_onednn():
    from lns_larq import cpu

    line = cpu.describe()
    assert cpu.model_name() in line
    assert f"{cpu.cores()} cores" in line
    assert line.endswith("oneDNN on" if cpu.onednn_enabled() else "oneDNN off")
    assert cpu.cores() >= 1


def test_cpu_description_names_a_onednn_isa_cap(monkeypatch):
    # A figure measured with oneDNN held to AVX2 on an AVX-512 CPU must say so.
    from lns_larq import cpu

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    line = cpu.describe()
    assert line.endswith("(its ISA capped at AVX2 by ONEDNN_MAX_CPU_ISA)") == cpu.onednn_enabled()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")  # oneDNN's default: no cap
    assert "capped" not in cpu.describe()
