"""tf.distribute (issue 6): strategies by name, the MirroredStrategy step equals the
single-device step, a mirrored `train/fit.py` run checkpoints and resumes, and a
multi-worker `train/fit.py` run (issue 12) of two processes on this machine writes
its files from the chief only and resumes after both workers are killed.

Two replicas need the CPU split into two logical devices before TensorFlow
initialises its devices, which this pytest process has already done: those tests
run `tests/mirrored_step.py` in a fresh process. The multi-worker test starts two
`train/fit.py` processes, each with its own `TF_CONFIG` (loopback ports).
"""

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import lns_larq  # noqa: F401  # isort: skip  (Keras 2 before TensorFlow)
import numpy as np
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
    args = ["--strategy", "mirrored", "--model", "resnet8_lns", "--dataset", "digits", "--epochs", "2",
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
    assert len(lns_larq.lns.lns_layers(restored)) == 6  # ResNet-8: one block per stage


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


# --- multi-worker: two `train/fit.py` processes on this machine --------------------

FIT = os.path.join(ROOT, "train", "fit.py")
MULTI_WORKER_TIMEOUT = 420  # seconds per invocation of both workers (a hang guard)


def _free_ports(n):
    """`n` distinct free TCP ports on the loopback interface (all bound at once)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start_workers(args, cluster, scratch, logs, attempt):
    """Worker 0 (the chief) and worker 1 of `cluster`, each running `fit.py args`
    with its own `TMPDIR` (`scratch[i]`), output to `logs/worker<i>_<attempt>.log`."""
    procs = []
    for index in range(len(cluster["worker"])):
        env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
        env.update(
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(scratch[index]),
        )
        log = open(logs / f"worker{index}_{attempt}.log", "w")
        procs.append(subprocess.Popen([sys.executable, FIT, *args], cwd=ROOT, env=env, stdout=log,
                                      stderr=subprocess.STDOUT, text=True))
        log.close()
    return procs


def _tails(logs, attempt):
    return "\n".join(f"--- worker{i}: " + (logs / f"worker{i}_{attempt}.log").read_text()[-2000:]
                     for i in range(2))


def _kill(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(timeout=60)


def _event_file_pids(out):
    """The process ids in the names of the TensorBoard event files under `out`
    (`events.out.tfevents.<time>.<host>.<pid>.<n>.v2`)."""
    return {int(name.split(".")[-3]) for _, _, names in os.walk(out) for name in names
            if name.startswith("events.out.tfevents.")}


def test_multi_worker_fit_only_the_chief_writes_and_resumes(tmp_path):
    """`fit.py --strategy multi_worker` for real: two worker processes on this
    machine, `TF_CONFIG` listing loopback ports, the same `--output_dir`.

    First invocation: both workers are killed (SIGKILL) once the chief has logged
    epoch 0. By then the chief has written `backup/chief` (`BackupAndRestore`) into
    the run's folder and worker 1 its own files into a scratch folder under its
    `TMPDIR`. Second invocation, the same command on both: both finish (return
    code 0), the run continues from the backup (one epoch this invocation,
    `log.csv` epochs 0 and 1, each once), and the run's folder holds only the
    chief's files: no `workertemp_*` (Keras' folders for the other workers' copies
    of checkpoints and TensorBoard logs), no rows written twice, TensorBoard event
    files only from the chief's processes; the non-chief's scratch folder is gone.

    About 2-3 minutes on an idle 2-core machine (most of it is tracing the train
    and test functions in both workers, once per invocation); `TF_CONFIG` names only
    127.0.0.1, although TensorFlow's gRPC server listens on all interfaces.
    """
    out = tmp_path / "run"
    scratch = [tmp_path / "tmp0", tmp_path / "tmp1"]
    for d in scratch:
        d.mkdir()
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    args = ["--strategy", "multi_worker", "--model", "resnet8", "--dataset", "digits", "--epochs", "2",
            "--steps_per_epoch", "2", "--batch_size", "8", "--output_dir", str(out), "--verbose", "0"]

    # 1. Kill both workers after the chief has logged epoch 0.
    procs = _start_workers(args, cluster, scratch, tmp_path, attempt=1)
    pids = [p.pid for p in procs]
    log = out / "log.csv"
    deadline = time.time() + MULTI_WORKER_TIMEOUT
    try:
        while time.time() < deadline and all(p.poll() is None for p in procs):
            if log.exists() and len(_log(out)) >= 1:
                break
            time.sleep(0.05)
    finally:
        _kill(procs)
    assert [p.returncode for p in procs] == [-signal.SIGKILL] * 2, (
        "a worker ended before it could be killed (or epoch 0 took too long)\n" + _tails(tmp_path, 1))
    assert [int(r["epoch"]) for r in _log(out)] == [0]
    assert os.listdir(out / "backup" / "chief"), "no BackupAndRestore checkpoint of epoch 0"
    assert not (out / "metrics.json").exists()
    # Worker 1 wrote its files (FlipRate's reference, written before epoch 0) to its
    # scratch folder; the chief has none.
    worker1 = [d for d in os.listdir(scratch[1]) if d.startswith("worker1_")]
    assert len(worker1) == 1 and (scratch[1] / worker1[0] / "flip_reference.npz").is_file()
    assert not [d for d in os.listdir(scratch[0]) if d.startswith("worker")]
    shutil.rmtree(scratch[1] / worker1[0])  # a killed worker cannot clean up

    # 2. Rerun the same command on both workers: the run resumes and completes.
    procs = _start_workers(args, cluster, scratch, tmp_path, attempt=2)
    pids += [p.pid for p in procs]
    deadline = time.time() + MULTI_WORKER_TIMEOUT
    try:
        codes = [p.wait(timeout=max(1.0, deadline - time.time())) for p in procs]
    except subprocess.TimeoutExpired:
        _kill(procs)
        pytest.fail("the rerun did not finish in time\n" + _tails(tmp_path, 2))
    assert codes == [0, 0], _tails(tmp_path, 2)
    for i in range(2):
        assert "test accuracy" in (tmp_path / f"worker{i}_2.log").read_text()

    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["epochs_this_invocation"] == 1, "the rerun did not resume from the backup"
    assert metrics["epochs"] == 2 and metrics["config"]["strategy"] == "multi_worker"
    # Each epoch logged once: a second writer would append its own rows.
    assert [int(r["epoch"]) for r in _log(out)] == [0, 1]
    with open(out / "layers.csv") as f:
        rows = [(r["epoch"], r["figure"], r["layer"]) for r in csv.DictReader(f)]
    assert len(rows) == len(set(rows)) and {int(r[0]) for r in rows} == {0, 1}

    # Only the chief's files: no leftovers of worker 1, the backup deleted at the end.
    assert sorted(os.listdir(out)) == sorted([
        "backup", "best.keras", "elapsed.json", "flip_reference.npz", "last.keras", "layers.csv",
        "log.csv", "metrics.json", "model.keras", "tensorboard"])
    assert os.listdir(out / "backup") == []
    assert not [os.path.join(d, n) for d, dirs, files in os.walk(out) for n in dirs + files
                if "workertemp" in n]
    # TensorBoard files of Keras' callback and of the per-layer log, both invocations:
    # written by worker 0's processes only.
    assert _event_file_pids(out) == {pids[0], pids[2]}
    # The non-chief's scratch folder is removed when its run ends.
    assert not [d for d in os.listdir(scratch[1]) if d.startswith("worker")]

    restored = tf.keras.models.load_model(out / "model.keras")
    assert restored.count_params() > 0


def test_bonn_trains_under_mirrored_strategy(tmp_path):
    """`--model resnet8_bonn --strategy mirrored` on 2 CPUs: BONN's state
    initialisation, its kernel and feature losses and its saved state all work
    with mirrored variables, and the losses it logs are finite."""
    out = str(tmp_path / "bonn")
    result = _run_script("--fit", "--strategy", "mirrored", "--model", "resnet8_bonn", "--dataset", "digits",
                         "--epochs", "1", "--steps_per_epoch", "3", "--batch_size", "16", "--lr", "0.01",
                         "--output_dir", out, "--verbose", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REPLICAS 2" in result.stdout
    (row,) = _log(out)
    # The kernel loss holds log-densities and may be negative; both terms are
    # there, finite and non-zero.
    for column in ("bonn_kernel_loss", "bonn_feature_loss", "loss"):
        assert np.isfinite(float(row[column])) and float(row[column]) != 0, (column, row)
    restored = tf.keras.models.load_model(os.path.join(out, "model.keras"))
    assert isinstance(restored, lns_larq.bonn.BONNModel)
    # The class centres were initialised from data (not left at 0) and survived saving.
    centres = [w for w in restored.weights if "centre" in w.name]
    assert centres and all(np.any(w.numpy() != 0) for w in centres)
