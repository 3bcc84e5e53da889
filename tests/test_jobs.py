"""lns_larq.jobs: runs at once on their own cores, in dependency order, locked.

The jobs are small Python processes standing in for fit.py: each records the
cores it may run on, its TensorFlow thread settings and when it ran, then writes
metrics.json (what marks a run complete) and exits.
"""

import json
import os
import sys
import time

import pytest

from lns_larq import jobs

ONE_CORE = [min(os.sched_getaffinity(0))] * 2  # two slots on one core: for the tests of order, not of pinning

# A stand-in for fit.py: argv = out folder, seconds to run, exit code, [folder it needs].
FAKE_RUN = r"""
import json, os, sys, time
out, seconds, code = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
needs = sys.argv[4] if len(sys.argv) > 4 else None
start = time.time()
record = dict(pid=os.getpid(), cores=sorted(os.sched_getaffinity(0)), start=start,
              intra=os.environ.get("TF_NUM_INTRAOP_THREADS"), inter=os.environ.get("TF_NUM_INTEROP_THREADS"),
              needs_complete=None if needs is None else os.path.exists(os.path.join(needs, "metrics.json")))
with open(os.path.join(out, "record.json"), "w") as f:
    json.dump(record, f)
time.sleep(seconds)
if code == 0:
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(dict(end=time.time()), f)
sys.exit(code)
"""


def fake(out, seconds=0.0, code=0, needs=None):
    os.makedirs(out, exist_ok=True)
    return jobs.Job([sys.executable, "-c", FAKE_RUN, str(out), str(seconds), str(code),
                     *([str(needs)] if needs else [])], str(out), str(needs) if needs else None)


def record(out):
    with open(os.path.join(out, "record.json")) as f:
        return json.load(f)


def end(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)["end"]


def test_core_groups_are_disjoint_and_cover_the_cores():
    assert jobs.core_groups(2, [0, 1]) == [[0], [1]]
    assert jobs.core_groups(2, [0, 1, 2, 3]) == [[0, 1], [2, 3]]
    assert jobs.core_groups(3, [4, 5, 6, 7]) == [[4], [5], [6, 7]]
    assert jobs.core_groups(1, [0, 1]) == [[0, 1]]
    with pytest.raises(jobs.JobError, match="--jobs 3 needs 3 cores"):
        jobs.core_groups(3, [0, 1])


def test_pinned_env_sizes_tensorflow_threads_to_the_cores():
    env = jobs.pinned_env([2, 3], {"PATH": "/bin"})
    assert env == {"PATH": "/bin", "TF_NUM_INTRAOP_THREADS": "2", "TF_NUM_INTEROP_THREADS": "1"}


def test_two_runs_at_once_each_stay_on_their_own_core(tmp_path):
    a, b = fake(tmp_path / "a", 3.0), fake(tmp_path / "b", 3.0)
    cores = sorted(os.sched_getaffinity(0))[:2]
    assert jobs.run_jobs([a, b], n=2, cores=cores, poll=0.05, log=lambda _: None) == []
    ra, rb = record(a.out), record(b.out)
    assert [ra["cores"], rb["cores"]] == [[cores[0]], [cores[1]]]  # pinned, one core each, not the same
    assert ra["intra"] == rb["intra"] == "1" and ra["inter"] == rb["inter"] == "1"
    # At once: each started before the other ended.
    assert rb["start"] < end(a.out) and ra["start"] < end(b.out)


def test_an_arm_never_starts_before_its_baseline_is_complete(tmp_path):
    base = fake(tmp_path / "baseline", 2.5)
    arms = [fake(tmp_path / f"arm{k}", 0.0, needs=base.out) for k in range(2)]
    other = fake(tmp_path / "other_baseline", 0.0)  # needs nothing: may overtake the waiting arms
    done = []
    failed = jobs.run_jobs([base, *arms, other], n=2, cores=ONE_CORE, poll=0.05, log=lambda _: None,
                           on_done=lambda job: done.append(job.out))
    assert failed == []
    for arm in arms:
        assert record(arm.out)["needs_complete"] is True
        assert record(arm.out)["start"] >= end(base.out)
    assert record(other.out)["start"] < end(base.out)  # the free core did not wait
    assert sorted(done) == sorted(j.out for j in [base, *arms, other])


def test_one_job_at_a_time_inherits_the_cores_and_threads(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    a, b = fake(tmp_path / "a", 0.3), fake(tmp_path / "b", 0.0)
    assert jobs.run_jobs([a, b], n=1, poll=0.05, log=lambda _: None) == []
    assert record(a.out)["cores"] == sorted(os.sched_getaffinity(0))
    assert record(a.out)["intra"] is None
    assert record(b.out)["start"] >= end(a.out)  # one after the other


def test_complete_runs_are_skipped(tmp_path):
    a = fake(tmp_path / "a")
    with open(os.path.join(a.out, "metrics.json"), "w") as f:
        f.write("{}")
    lines = []
    assert jobs.run_jobs([a], n=1, poll=0.05, log=lines.append) == []
    assert lines == [f"complete, skipped: {a.out}"]
    assert not os.path.exists(os.path.join(a.out, "record.json"))


def test_a_failed_baseline_stops_its_arms_and_nothing_else(tmp_path):
    base = fake(tmp_path / "baseline", 0.0, code=3)
    arm = fake(tmp_path / "arm", 0.0, needs=base.out)
    other = fake(tmp_path / "other", 0.0)
    lines = []
    failed = jobs.run_jobs([base, arm, other], n=1, poll=0.05, log=lines.append)
    assert [j.out for j in failed] == [base.out, arm.out]
    assert not os.path.exists(os.path.join(arm.out, "record.json"))
    assert jobs.complete(other.out)
    assert f"run failed (exit 3), see {base.log}" in lines


def test_a_run_another_process_trains_is_not_started(tmp_path):
    a = fake(tmp_path / "a")
    holder = jobs._lock(a.out)
    try:
        with pytest.raises(jobs.JobError, match="another process is training this run"):
            jobs.run_jobs([a], n=1, poll=0.05, log=lambda _: None)
    finally:
        holder.close()
    assert not os.path.exists(os.path.join(a.out, "record.json"))
    assert jobs.run_jobs([a], n=1, poll=0.05, log=lambda _: None) == []  # the lock went with its holder


def test_a_prerequisite_nobody_trains_is_an_error_not_a_hang(tmp_path):
    arm = fake(tmp_path / "arm", needs=tmp_path / "missing_baseline")
    with pytest.raises(jobs.JobError, match="missing_baseline, which no job of this campaign trains"):
        jobs.run_jobs([arm], n=2, cores=ONE_CORE, poll=0.05, log=lambda _: None)


def test_an_interrupt_terminates_the_running_jobs(tmp_path):
    quick, slow = fake(tmp_path / "quick", 0.0), fake(tmp_path / "slow", 60.0)

    def interrupt(job):
        deadline = time.time() + 30
        while not os.path.exists(os.path.join(slow.out, "record.json")) and time.time() < deadline:
            time.sleep(0.05)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        jobs.run_jobs([quick, slow], n=2, cores=ONE_CORE, poll=0.05, log=lambda _: None, on_done=interrupt)
    pid = record(slow.out)["pid"]
    with pytest.raises(ProcessLookupError):  # terminated and reaped, not left training
        os.kill(pid, 0)
    assert not jobs.complete(slow.out)
