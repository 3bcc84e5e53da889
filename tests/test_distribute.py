"""tf.distribute (issue 6): strategies by name, the MirroredStrategy step equals the
single-device step, and a mirrored `train/fit.py` run checkpoints and resumes.

Two replicas need the CPU split into two logical devices before TensorFlow
initialises its devices, which this pytest process has already done: those tests
run `tests/mirrored_step.py` in a fresh process.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import lns_larq  # noqa: F401  (Keras 2 before TensorFlow)
import pytest
import tensorflow as tf

from lns_larq import distribute, training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "mirrored_step.py")


def _run_script(*args, timeout=900):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_mirrored_step_equals_single_device_step():
    """One SGD step of an LNS model on a global batch of 8: 2 replicas x 4 images vs
    1 device x 8 images. Keras adds the auxiliary losses on each replica and scales
    them by 1/2; the result must equal the single-device step."""
    proc = _run_script()
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    r = json.loads(lines[-1][len("RESULT "):])
    assert r["replicas"] == 2
    assert r["aux_terms"] == 2 and r["aux_loss"] > 0.1
    # The logged loss is the mean cross-entropy over the global batch + the aux losses once.
    assert r["loss_single"] == pytest.approx(r["loss_by_hand"], rel=1e-5)
    assert r["loss_mirrored"] == pytest.approx(r["loss_by_hand"], rel=1e-5)
    # Same updated weights, every one of which moved.
    assert r["weight_shapes_match"] and r["weights_changed"] == r["weights"]
    assert r["max_weight_diff"] <= 1e-5 * max(1.0, r["max_update"])
    # A wrong scaling of the aux losses (x2 or x0.5) would move weights by half the
    # aux-only update: far beyond the tolerance, so the check above would catch it.
    assert 0.5 * r["aux_update"] > 100 * 1e-5


def _log(out):
    with open(os.path.join(out, "log.csv")) as f:
        return list(csv.DictReader(f))


def test_mirrored_fit_checkpoints_and_resumes(tmp_path):
    """`fit.py --strategy mirrored` on 2 CPUs: kill after the first epoch, rerun the
    same command, and the run continues from the `BackupAndRestore` checkpoint."""
    out = str(tmp_path / "run")
    args = ["--strategy", "mirrored", "--model", "resnet20_lns", "--dataset", "digits", "--epochs", "2",
            "--steps_per_epoch", "2", "--batch_size", "8", "--lr", "0.05", "--output_dir", out,
            "--verbose", "0"]
    proc = subprocess.Popen([sys.executable, SCRIPT, "--fit", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    log = os.path.join(out, "log.csv")
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(log) and len(_log(out)) >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    stdout = proc.communicate()[0]
    assert "REPLICAS 2" in stdout
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"
    assert os.path.isdir(os.path.join(out, "backup")) and os.path.isfile(os.path.join(out, "last.keras"))
    assert not os.path.exists(os.path.join(out, "metrics.json"))

    result = _run_script("--fit", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REPLICAS 2" in result.stdout
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["epochs_this_invocation"] == 1
    assert metrics["config"]["strategy"] == "mirrored"
    assert [int(r["epoch"]) for r in _log(out)] == [0, 1]
    for name in ("model.keras", "best.keras", "last.keras"):
        assert os.path.isfile(os.path.join(out, name)), name
    restored = tf.keras.models.load_model(os.path.join(out, "model.keras"))
    assert len(lns_larq.lns.lns_layers(restored)) == 18


def test_get_strategy_by_name():
    strategy = distribute.get_strategy("default")
    assert strategy is tf.distribute.get_strategy()
    assert distribute.is_chief(strategy) and distribute.worker_index(strategy) == 0
    mirrored = distribute.get_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert distribute.is_chief(mirrored)
    with pytest.raises(distribute.StrategyError, match="Unknown strategy 'horovod'"):
        distribute.get_strategy("horovod")


@pytest.mark.parametrize(
    "tf_config,expected",
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{not json", "TF_CONFIG is not valid JSON"),
        ('{"cluster": {"worker": ["a:1", "b:1"]}}', "needs a 'cluster' and a 'task'"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "is not in its cluster"),
    ],
)
def test_multi_worker_needs_a_valid_tf_config(tf_config, expected, monkeypatch):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(distribute.StrategyError, match=expected):
        distribute.get_strategy("multi_worker")


def test_fit_reports_strategy_errors_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train", "fit.py"), "--strategy", "multi_worker",
         "--dataset", "digits", "--output_dir", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode != 0
    assert "fit.py: error: strategy multi_worker needs the TF_CONFIG" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(training.ConfigError, match="strategy must be one of"):
        training.TrainConfig(strategy="gpus").validate()


@pytest.mark.parametrize(
    "cluster,task_type,task_id,chief",
    [
        ({"worker": ["a:1", "b:1"]}, "worker", 0, True),
        ({"worker": ["a:1", "b:1"]}, "worker", 1, False),
        ({"chief": ["c:1"], "worker": ["a:1"]}, "chief", 0, True),
        ({"chief": ["c:1"], "worker": ["a:1"]}, "worker", 0, False),
    ],
)
def test_only_the_chief_writes_the_run_files(cluster, task_type, task_id, chief):
    """Which worker of a multi-worker run writes log.csv, metrics.json, model.keras."""
    import types

    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id
    )
    strategy = types.SimpleNamespace(cluster_resolver=resolver)
    assert distribute.is_chief(strategy) is chief
    assert distribute.worker_index(strategy) == task_id
