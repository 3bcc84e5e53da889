"""campaigns/commit_checkpoints.sh: one checkpoint per run in flight, nothing more.

The script runs in a scratch git repository holding fake run folders, laid out as
fit.py leaves them.
"""

import json
import os
import shutil
import subprocess
import sys
import zlib

from .conftest import ROOT


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def _run(repo, name, seconds, checkpoint="backup", size=1000, complete=False, extra=()):
    """A run folder: its logs, elapsed training time and checkpoint (`backup`,
    `warmup.weights.h5` or `backup_warmup`) of `size` bytes, plus `extra` files."""
    out = repo / "campaigns" / "c" / name
    out.mkdir(parents=True)
    (out / "fit.log").write_text("Epoch 1/400\n")
    (out / "log.csv").write_text("epoch,accuracy\n0,0.3\n1,0.4\n")
    (out / "elapsed.json").write_text(json.dumps({"seconds": seconds}))
    (out / "flip_reference.npz").write_bytes(b"ref")
    path = out / checkpoint
    if checkpoint.startswith("backup"):
        (path / "chief").mkdir(parents=True)
        path = path / "chief" / "ckpt-2.data-00000-of-00001"
    path.write_bytes(os.urandom(size))
    for name in extra:
        (out / name).write_bytes(b"x")
    if complete:
        (out / "metrics.json").write_text("{}")
    return out


def _repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "campaigns").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "campaigns", "commit_checkpoints.sh"), repo / "campaigns")
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@t")
    _git(repo, "config", "user.name", "t")
    return repo


def _commit_checkpoints(repo):
    # PAUSE: stop no process of this machine (the script stops the campaign's while it
    # adds files); PYTHON: this one, with lns_larq importable (for zero_momentum).
    result = subprocess.run(["bash", "campaigns/commit_checkpoints.sh", "checkpoints"], cwd=repo,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PAUSE": f"no-such-process-{os.getpid()}-x",
                                 "PYTHON": sys.executable, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    return result


def test_commit_checkpoints_commits_one_checkpoint_per_run_in_flight(tmp_path):
    repo = _repo(tmp_path)
    baseline = _run(repo, "baseline", 100.0, extra=["best.keras", "last.keras"])
    # An earlier session committed an older checkpoint and best.keras side by side.
    old = baseline / "backup" / "chief" / "ckpt-1.data-00000-of-00001"
    old.write_bytes(b"old")
    _git(repo, "add", "-f", str(old), str(baseline / "best.keras"), "campaigns/commit_checkpoints.sh")
    _git(repo, "commit", "-qm", "earlier session")
    old.unlink()  # BackupAndRestore replaced it since
    young_lns = _run(repo, "young_lns", 600.0, size=6 << 20)
    old_lns = _run(repo, "old_lns", 4000.0, size=6 << 20, extra=["warmup.weights.h5", "warmup.json"])
    warm = _run(repo, "warm_started", 30.0, checkpoint="warmup.weights.h5", extra=["warmup.json"])
    done = _run(repo, "done", 9000.0, complete=True)

    result = _commit_checkpoints(repo)
    tracked = set(_git(repo, "ls-files").split())

    def rel(path):
        return os.path.relpath(path, repo)

    logs = {"fit.log", "log.csv", "elapsed.json", "flip_reference.npz"}
    ckpt = "backup/chief/ckpt-2.data-00000-of-00001"
    # The baseline: its current checkpoint and logs; not best.keras, last.keras or the old checkpoint.
    assert {rel(baseline / n) for n in [*logs, ckpt]} <= tracked
    assert not {rel(baseline / n) for n in ["best.keras", "last.keras", "backup/chief/ckpt-1.data-00000-of-00001"]
                } & tracked
    # An LNS run past its first hour: its fine-tuning checkpoint, not warmup.weights.h5.
    assert rel(old_lns / ckpt) in tracked and rel(old_lns / "warmup.json") in tracked
    assert rel(old_lns / "warmup.weights.h5") not in tracked
    # An LNS run younger than an hour with a large checkpoint: nothing (it starts again).
    assert not any(t.startswith(rel(young_lns)) for t in tracked)
    assert f"not committed: {rel(young_lns)}" in result.stdout
    # A warm start done, fine-tuning not begun: its warm start's weights (small here).
    assert {rel(warm / "warmup.weights.h5"), rel(warm / "warmup.json")} <= tracked
    # A complete run is commit_results.sh's business.
    assert not any(t.startswith(rel(done)) for t in tracked)
    assert _git(repo, "log", "-1", "--format=%s").strip() == "checkpoints"


def test_commit_checkpoints_commits_a_checkpoint_without_its_sgd_momentum(tmp_path):
    """A real fine-tuning checkpoint (SGD with momentum, BackupAndRestore) is
    committed with its momentum zeroed and its weights rounded to float16's
    precision: it packs to about a third, and its weights keep their signs."""
    import lns_larq  # noqa: F401  # isort: skip  (Keras 2 before TensorFlow)
    import numpy as np
    import tensorflow as tf

    repo = _repo(tmp_path)
    run = _run(repo, "finetune", 4000.0)
    shutil.rmtree(run / "backup")

    class Interrupt(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((32,)), tf.keras.layers.Dense(256), tf.keras.layers.Dense(10)])
    model.compile(tf.keras.optimizers.SGD(0.1, momentum=0.9),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    try:
        model.fit(x, np.arange(64) % 10, epochs=2, verbose=0,
                  callbacks=[tf.keras.callbacks.BackupAndRestore(str(run / "backup")), Interrupt()])
    except KeyboardInterrupt:
        pass
    prefix = tf.train.latest_checkpoint(str(run / "backup" / "chief"))
    data = prefix + ".data-00000-of-00001"
    before = tf.train.load_checkpoint(prefix)
    weights = {k: before.get_tensor(k) for k in before.get_variable_to_dtype_map() if k.startswith("model/layer")}
    assert len(weights) == 4
    full = len(zlib.compress(open(data, "rb").read()))

    result = _commit_checkpoints(repo)
    # Two kernels, two biases; rounded: them, their momentums (zeros stay zeros) and the learning rate.
    assert "4 momentum tensors zeroed, 9 tensors rounded" in result.stdout
    committed = _git(repo, "ls-files", "-s", os.path.relpath(data, repo)).split()[1]
    blob = subprocess.run(["git", "cat-file", "blob", committed], cwd=repo, capture_output=True, check=True).stdout
    assert blob == open(data, "rb").read()  # what is committed is the file on disk, zeroed and rounded
    # The momentum, half the file, packs to nothing; the rounded weights to about two thirds.
    # Measured: zeroing alone 0.505 of the full packed size, zeroing and rounding 0.329.
    assert len(zlib.compress(blob)) < 0.4 * full
    after = tf.train.load_checkpoint(prefix)
    from lns_larq.callbacks import round_mantissa

    for key, value in weights.items():
        np.testing.assert_array_equal(after.get_tensor(key), round_mantissa(value))


def test_every_committed_campaign_checkpoint_is_whole():
    """A committed BackupAndRestore state file names a checkpoint that is committed
    too; otherwise a fresh clone cannot resume the run (a `git commit -a` after
    BackupAndRestore replaced its checkpoint once committed the state file and the
    deletion of the old checkpoint, not the new one)."""
    tracked = set(_git(ROOT, "ls-files", "campaigns").split())
    states = [path for path in tracked if path.endswith("/chief/checkpoint")]
    for state in states:
        text = _git(ROOT, "show", f":{state}")  # as committed (or staged), not as the running campaign left it
        name = text.split('model_checkpoint_path: "')[1].split('"')[0]
        folder = os.path.dirname(state)
        missing = {f"{folder}/{name}{suffix}" for suffix in (".index", ".data-00000-of-00001")} - tracked
        assert not missing, f"{state} names {name}, which is not committed: run campaigns/commit_checkpoints.sh"


# A stand-in for the campaign's Python: `-c` runs Python; train/reproduce.py with
# `--arms baseline` "trains" the baseline of its --runs_dir: it writes its
# metrics.json, with test accuracy $PLAIN_ACC for the plain one (0.86 for the
# others), and its model.keras. A pinned run (one TensorFlow thread) of the plain
# one ends once the hedge's has started (hedge_training); a pinned run of the hedge
# takes 60 s, so it is still training when the plain one is done; a run alone
# takes no time. The resnet20_hardtanh probe logs epochs up to PROBE_ROWS (60
# unless set; set, it then crashes) and, pinned, trains on for 60 s. Stopped, a
# run logs so. Any other call is stage 2, the arms. Each call is logged in
# calls.log, a baseline's with its cores and threads, the arms' with their model.
_FAKE_PYTHON = r"""#!/usr/bin/env bash
if [ "$1" = -c ]; then exec python3 "$@"; fi
runs=$(echo "$*" | sed -n 's/.*--runs_dir \([^ ]*\).*/\1/p')
stopped() { echo "stopped $runs" >> calls.log; exit 1; }
case "$*" in
  *"--arms baseline --figures=false"*)
    cores=$(python3 -c 'import os; print(",".join(map(str, sorted(os.sched_getaffinity(0)))))')
    echo "baseline $runs cores=$cores threads=${TF_NUM_INTRAOP_THREADS:-all}" >> calls.log
    acc=0.86; [ "$runs" = campaigns/paper ] && acc=$PLAIN_ACC
    if [ "$runs" = campaigns/paper ] && [ "${TF_NUM_INTRAOP_THREADS:-}" = 1 ]; then
      for _ in $(seq 600); do [ -e hedge_training ] && break; sleep 0.1 & wait $! || stopped; done
    fi
    if [ "$runs" = campaigns/paper_prelu ] && [ "${TF_NUM_INTRAOP_THREADS:-}" = 1 ]; then
      sleep 60 &  # the campaign stops it (pkill -P: this script's children)
      touch hedge_training
      wait $! || stopped
    fi
    if [ "$runs" = campaigns/paper_hardtanh ]; then
      mkdir -p "$runs/dorefa/seed0/baseline"
      log="$runs/dorefa/seed0/baseline/log.csv"
      [ -f "$log" ] || echo epoch > "$log"
      while [ $(($(wc -l < "$log") - 1)) -lt "${PROBE_ROWS:-60}" ]; do echo row >> "$log"; done
      [ -n "${PROBE_ROWS:-}" ] && exit 1  # it crashed
      if [ "${TF_NUM_INTRAOP_THREADS:-}" = 1 ]; then sleep 60 & wait $! || stopped; fi
    fi
    mkdir -p "$runs/dorefa/seed0/baseline"
    echo "{\"test_accuracy\": $acc}" > "$runs/dorefa/seed0/baseline/metrics.json"
    touch "$runs/dorefa/seed0/baseline/model.keras";;
  *) echo "arms $runs $(echo "$*" | sed -n 's/.*--model \([^ ]*\).*/\1/p')" >> calls.log;;
esac
"""


def _issue36(tmp_path, plain_acc, baseline=None, returncode=0, **env):
    """Run campaigns/issue36.sh with the stand-in Python and `env`; return the
    repository, the calls it logged and the script's output."""
    repo = tmp_path / "repo"
    if not (repo / ".venv").exists():
        (repo / "campaigns").mkdir(parents=True, exist_ok=True)
        (repo / ".venv" / "bin").mkdir(parents=True)
        for script in ("issue36.sh", "restore_checkpoints.sh"):
            shutil.copy(os.path.join(ROOT, "campaigns", script), repo / "campaigns")
        (repo / "campaigns" / "commit_results.sh").write_text('echo "commit $1" >> calls.log\n')
        (repo / ".venv" / "bin" / "python").write_text(_FAKE_PYTHON)
        (repo / ".venv" / "bin" / "python").chmod(0o755)
        _git(repo, "init", "-q")
    (repo / "calls.log").write_text("")
    (repo / "hedge_training").unlink(missing_ok=True)
    env = {**os.environ, "PLAIN_ACC": str(plain_acc), **({"BASELINE": baseline} if baseline else {}), **env}
    result = subprocess.run(["bash", "campaigns/issue36.sh"], cwd=repo, capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == returncode, result.stderr
    return repo, (repo / "calls.log").read_text().splitlines(), result.stdout


CORES = sorted(os.sched_getaffinity(0))
ALL_CORES = ",".join(map(str, CORES))
PINNED = [f"baseline campaigns/paper cores={CORES[0]} threads=1",
          f"baseline campaigns/paper_hardtanh cores={CORES[1]} threads=1"]  # sorted
# Stage 1 after the probe: the hedge on the probe's core, then both stopped once the plain one is done.
HEDGE_BESIDE = [f"baseline campaigns/paper_prelu cores={CORES[1]} threads=1", "stopped campaigns/paper_prelu"]
PLAIN_DONE = "commit Campaign paper: the 400-epoch resnet20 baseline"
PROBE_LOG = "campaigns/paper_hardtanh/dorefa/seed0/baseline/log.csv"


def test_issue36_trains_the_probe_then_the_hedge_beside_the_plain_baseline_and_starts_the_arms_at_84_percent(
        tmp_path):
    repo, calls, _ = _issue36(tmp_path, 0.845)
    # The plain baseline trains on one core; the diagnosis's probe trains on the
    # other, one thread each, and is stopped once it has its 60 epochs (the
    # stand-in would train on for 60 s); then the hedge takes its core.
    assert sorted(calls[:2]) == PINNED
    assert calls[2:5] == ["stopped campaigns/paper_hardtanh", *HEDGE_BESIDE]
    assert len((repo / PROBE_LOG).read_text().splitlines()) == 61
    assert not (repo / PROBE_LOG).with_name("metrics.json").exists()
    # The hedge (60 s) is stopped, not waited for; the arms fine-tune the plain
    # baseline, whose model is committed for every later session.
    assert calls[5:] == [PLAIN_DONE, "commit Campaign paper: the baseline the arms fine-tune (campaigns/paper)",
                         "arms campaigns/paper resnet20"]
    assert "campaigns/paper/dorefa/seed0/baseline/model.keras" in _git(repo, "diff", "--cached", "--name-only")
    assert not (repo / "campaigns/paper_prelu/dorefa/seed0/baseline/metrics.json").exists()
    # A rerun goes straight on to the arms; the stopped hedge stays where it is.
    _, calls, _ = _issue36(tmp_path, 0.845)
    assert calls == [PLAIN_DONE, "commit Campaign paper: the baseline the arms fine-tune (campaigns/paper)",
                     "arms campaigns/paper resnet20"]


def test_issue36_below_84_percent_trains_the_hedge_alone_and_waits_for_a_baseline_chosen_by_hand(tmp_path):
    repo, calls, out = _issue36(tmp_path, 0.83)
    assert sorted(calls[:2]) == PINNED and calls[2:5] == ["stopped campaigns/paper_hardtanh", *HEDGE_BESIDE]
    # The probe has its epochs: the hedge resumes alone on every core.
    assert calls[5:] == [PLAIN_DONE, f"baseline campaigns/paper_prelu cores={ALL_CORES} threads=all",
                         "commit Campaign paper: the 400-epoch resnet20_prelu baseline"]
    assert "diagnose it (docs/recipe.md), then rerun with BASELINE=<campaign>" in out
    # A new session with the hedge unfinished: the probe is not rerun.
    (repo / "campaigns/paper_prelu/dorefa/seed0/baseline/metrics.json").unlink()
    _, calls, _ = _issue36(tmp_path, 0.83)
    assert calls == [PLAIN_DONE, f"baseline campaigns/paper_prelu cores={ALL_CORES} threads=all",
                     "commit Campaign paper: the 400-epoch resnet20_prelu baseline"]
    _, calls, _ = _issue36(tmp_path, 0.83, baseline="campaigns/paper_prelu")
    assert calls[-2:] == ["commit Campaign paper: the baseline the arms fine-tune (campaigns/paper_prelu)",
                          "arms campaigns/paper_prelu resnet20_prelu"]


def test_issue36_a_probe_short_of_its_epochs_when_the_plain_baseline_ends_finishes_beside_the_hedge(tmp_path):
    # The plain baseline ended before the probe had its epochs (here: a rerun
    # after a session that trained the plain one alone).
    _issue36(tmp_path, 0.83, baseline="campaigns/paper")
    repo, calls, _ = _issue36(tmp_path, 0.83)
    assert calls[0] == PLAIN_DONE
    assert sorted(calls[1:3]) == [f"baseline campaigns/paper_hardtanh cores={CORES[1]} threads=1",
                                  f"baseline campaigns/paper_prelu cores={CORES[0]} threads=1"]
    assert calls[3:] == ["stopped campaigns/paper_hardtanh", "stopped campaigns/paper_prelu",
                         f"baseline campaigns/paper_prelu cores={ALL_CORES} threads=all",
                         "commit Campaign paper: the 400-epoch resnet20_prelu baseline"]
    assert len((repo / PROBE_LOG).read_text().splitlines()) == 61


def test_issue36_a_probe_that_dies_leaves_the_plain_baseline_training_and_stops_the_campaign_if_it_dies_again(
        tmp_path):
    _, calls, out = _issue36(tmp_path, 0.83, returncode=1, PROBE_ROWS="10")
    # Beside the plain baseline, the crashed probe's core goes to the hedge.
    assert sorted(calls[:2]) == PINNED and calls[2:5] == [*HEDGE_BESIDE, PLAIN_DONE]
    # Retried beside the hedge once the plain one is done, it dies again: the hedge
    # is stopped (resumable) and nothing else starts.
    assert sorted(calls[5:7]) == [f"baseline campaigns/paper_hardtanh cores={CORES[1]} threads=1",
                                  f"baseline campaigns/paper_prelu cores={CORES[0]} threads=1"]
    assert calls[7:] == ["stopped campaigns/paper_prelu"]
    assert out.count("the resnet20_hardtanh probe ended after 10 epochs") == 2


def test_issue36_a_plain_baseline_chosen_by_hand_trains_alone_and_needs_no_hedge(tmp_path):
    _, calls, _ = _issue36(tmp_path, 0.83, baseline="campaigns/paper")
    assert calls[0] == f"baseline campaigns/paper cores={ALL_CORES} threads=all"
    assert not any("paper_prelu" in call or "paper_hardtanh" in call for call in calls)
    assert calls[-1] == "arms campaigns/paper resnet20"


def test_issue36_the_probe_chosen_as_the_baseline_trains_its_400_epochs_before_the_arms(tmp_path):
    _, calls, _ = _issue36(tmp_path, 0.83, baseline="campaigns/paper_hardtanh")
    assert calls == [f"baseline campaigns/paper cores={ALL_CORES} threads=all", PLAIN_DONE,
                     f"baseline campaigns/paper_hardtanh cores={ALL_CORES} threads=all",
                     "commit Campaign paper: the 400-epoch resnet20_hardtanh baseline",
                     "commit Campaign paper: the baseline the arms fine-tune (campaigns/paper_hardtanh)",
                     "arms campaigns/paper_hardtanh resnet20_hardtanh"]


def test_issue36_refuses_an_unknown_baseline_before_it_trains(tmp_path):
    _, calls, out = _issue36(tmp_path, 0.83, baseline="campaigns/papr", returncode=1)
    assert calls == [] and out.strip() == (
        "BASELINE must be campaigns/paper, campaigns/paper_prelu or campaigns/paper_hardtanh, not campaigns/papr")


def _backup(folder, epoch):
    """A BackupAndRestore folder as fit.py leaves it: checkpoint ckpt-<epoch> and the
    state file naming it."""
    chief = folder / "chief"
    chief.mkdir(parents=True, exist_ok=True)
    for old in chief.glob("ckpt-*"):
        old.unlink()  # BackupAndRestore keeps one
    for suffix in (".index", ".data-00000-of-00001"):
        (chief / f"ckpt-{epoch}{suffix}").write_bytes(os.urandom(100))
    (chief / "checkpoint").write_text(f'model_checkpoint_path: "ckpt-{epoch}"\n'
                                      f'all_model_checkpoint_paths: "ckpt-{epoch}"\n')


def _restore_checkpoints(repo):
    shutil.copy(os.path.join(ROOT, "campaigns", "restore_checkpoints.sh"), repo / "campaigns")
    result = subprocess.run(["bash", "campaigns/restore_checkpoints.sh"], cwd=repo, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_restore_checkpoints_gives_back_a_committed_checkpoint_that_a_partial_copy_lost(tmp_path):
    """A new machine's partial copy of the last working folder (tracked files as they
    were, untracked ones missing) is restored to the commit; a run that can resume
    from its own newer checkpoint is left alone."""
    repo = _repo(tmp_path)
    lost, rotated = _run(repo, "lost", 100.0), _run(repo, "rotated", 100.0)
    lns = _run(repo, "lns", 100.0, checkpoint="warmup.weights.h5")
    done = _run(repo, "done", 100.0, complete=True)
    for run in (lost, rotated, done):
        _backup(run / "backup", 2)
    _git(repo, "add", "-f", "campaigns")
    _git(repo, "commit", "-qm", "session end")
    committed = {run: _files(run) for run in (lost, lns)}
    # The next epoch on the old machine: BackupAndRestore replaced ckpt-2 by ckpt-3
    # and the logs grew. Of `lost` and `done` the copy kept the tracked files only.
    for run in (lost, rotated, done):
        _backup(run / "backup", 3)
        with open(run / "log.csv", "a") as log:
            log.write("2,0.5\n")
    for run in (lost, done):
        for new in (run / "backup" / "chief").glob("ckpt-3*"):
            new.unlink()
    (lns / "warmup.weights.h5").unlink()
    rotated_now, done_now = _files(rotated), _files(done)

    out = _restore_checkpoints(repo)

    assert _files(lost) == committed[lost] and _files(lns) == committed[lns]
    assert "log.csv" in committed[lost] and b"2,0.5" not in committed[lost]["log.csv"]
    assert _files(rotated) == rotated_now and _files(done) == done_now
    assert sorted(line.split()[1] for line in out.splitlines()) == ["campaigns/c/lns", "campaigns/c/lost"]
    assert _restore_checkpoints(repo) == ""  # nothing left to restore


def test_issue36_restores_lost_checkpoints_before_it_resumes(tmp_path):
    repo = _repo(tmp_path)
    run = repo / "campaigns" / "paper" / "dorefa" / "seed0" / "baseline"
    _backup(run / "backup", 188)
    _git(repo, "add", "-f", "campaigns")
    _git(repo, "commit", "-qm", "session end")
    _backup(run / "backup", 189)
    for new in (run / "backup" / "chief").glob("ckpt-189*"):
        new.unlink()

    _, _, out = _issue36(tmp_path, 0.845)

    assert (run / "backup" / "chief" / "ckpt-188.index").exists()
    assert out.startswith("restored campaigns/paper/dorefa/seed0/baseline from the last commit")
