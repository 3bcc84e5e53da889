"""Run a campaign's training runs several at once, each pinned to its own cores.

A `Job` is one `train/fit.py` command, the run folder it writes (complete once
`metrics.json` exists there) and the run folder it starts from, if any (a
fine-tuning arm's baseline). `run_jobs` starts the jobs in their order, at most
`n` at a time, and never starts one before the run it needs is complete.

With `n` > 1 the machine's cores (those this process may use) are split into `n`
disjoint groups, and each job runs pinned to one group with TensorFlow's intra-op
threads set to the group's size and its inter-op threads to 1. Two pinned
processes of one thread each trained ResNet-20 1.19x faster in all than one
process with two threads on an Intel Xeon (family 6 model 167), 1.36-1.42x on one of
family 6 model 207, 1.07-1.20x on an AMD EPYC Zen 3; its LNS variant 1.22-1.34x on
Zen 3 and 1.18-1.20x on the model 207 Xeon (docs/benchmarks.md); each run alone is
slower. With `n` = 1 a job inherits this process's cores and
threads unchanged.

A job's folder is locked (`fcntl.flock` on `<out>/.lock`) while it trains, so a
second campaign started by mistake on the same runs stops with a one-line error
instead of training a run twice; the lock goes with the process that holds it.

```python
from lns_larq import jobs

base = jobs.Job(["python", "train/fit.py", "--output_dir=runs/b"], "runs/b")
arm = jobs.Job(["python", "train/fit.py", "--pretrained=runs/b/model.keras", "--output_dir=runs/a"],
               "runs/a", needs="runs/b")
failed = jobs.run_jobs([base, arm], n=2)  # arm starts once runs/b/metrics.json exists
```
"""

import dataclasses
import fcntl
import os
import subprocess
import time
from collections.abc import Callable, Sequence

__all__ = ["Job", "JobError", "complete", "core_groups", "pinned_env", "popen", "run_jobs"]


class JobError(RuntimeError):
    """A job cannot start: too many jobs for the cores, a run locked by another
    process, or a run whose prerequisite will never be complete."""


@dataclasses.dataclass
class Job:
    """One run: `command` (argv) writing into the folder `out`; `needs`, the folder
    of a run that must be complete first (None for none)."""

    command: Sequence[str]
    out: str
    needs: str | None = None

    @property
    def log(self) -> str:
        """Where the job's output goes (appended, so a resumed run keeps its history)."""
        return os.path.join(self.out, "fit.log")


def complete(out: str) -> bool:
    """Whether `out` holds a finished run: fit.py writes metrics.json last."""
    return os.path.exists(os.path.join(out, "metrics.json"))


def core_groups(n: int, cores: Sequence[int] | None = None) -> list[list[int]]:
    """`n` disjoint, contiguous, as-equal-as-possible groups of `cores` (default:
    the cores this process may run on, `os.sched_getaffinity`).

    # Raises
        JobError: if there are fewer cores than groups.
    """
    cores = sorted(os.sched_getaffinity(0) if cores is None else cores)
    if n > len(cores):
        raise JobError(f"--jobs {n} needs {n} cores, this process may use {len(cores)} ({cores})")
    return [cores[i * len(cores) // n:(i + 1) * len(cores) // n] for i in range(n)]


def pinned_env(cores: Sequence[int], env: dict | None = None) -> dict:
    """`env` (default `os.environ`) with TensorFlow's thread pools sized for `cores`:
    intra-op threads = the number of cores, inter-op threads = 1."""
    env = dict(os.environ if env is None else env)
    env.update(TF_NUM_INTRAOP_THREADS=str(len(cores)), TF_NUM_INTEROP_THREADS="1")
    return env


def popen(command: Sequence[str], cores: Sequence[int] | None = None, **kwargs) -> subprocess.Popen:
    """`subprocess.Popen(command, **kwargs)`, pinned to `cores` with `pinned_env`'s
    threads (None: this process's cores and environment)."""
    if cores is None:
        return subprocess.Popen(list(command), **kwargs)
    return subprocess.Popen(list(command), env=pinned_env(cores),
                            preexec_fn=lambda: os.sched_setaffinity(0, cores), **kwargs)


def _lock(out: str):
    """An open file holding an exclusive lock on `out`, or JobError if another
    process holds it."""
    os.makedirs(out, exist_ok=True)
    handle = open(os.path.join(out, ".lock"), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise JobError(f"{out}: another process is training this run; wait for it or stop it") from None
    return handle


def run_jobs(jobs: Sequence[Job], n: int = 1, on_done: Callable[[Job], None] | None = None,
             cores: Sequence[int] | None = None, poll: float = 1.0,
             log: Callable[[str], None] = print) -> list[Job]:
    """Run the incomplete `jobs`, at most `n` at once; return the ones that failed.

    Jobs start in their order as cores come free, each once its `needs` is complete
    (a later job whose prerequisite is done may start before an earlier one that
    waits). Complete runs are skipped. After a job ends well, `on_done(job)` runs
    (a report, a commit). A failed job's dependents are not started; the other
    jobs go on. On KeyboardInterrupt or SystemExit the running jobs are terminated
    (each resumes from its last checkpoint when the campaign runs again).

    # Raises
        JobError: if `n` exceeds the cores, or a run is locked by another process.
    """
    groups = core_groups(n, cores) if n > 1 else [None]
    pending = []
    for job in jobs:
        if complete(job.out):
            log(f"complete, skipped: {job.out}")
        else:
            pending.append(job)
    running = {}  # slot -> (job, process, lock)
    failed = []
    try:
        while pending or running:
            for slot, (job, process, lock) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[slot]
                lock.close()
                if process.returncode == 0 and complete(job.out):
                    if on_done is not None:
                        on_done(job)
                else:
                    log(f"run failed (exit {process.returncode}), see {job.log}")
                    failed.append(job)
            dead = {job.out for job in failed}
            blocked = [job for job in pending if job.needs in dead]
            for job in blocked:
                log(f"not started, {job.needs} failed: {job.out}")
                failed.append(job)
                pending.remove(job)
            for slot in [s for s in range(len(groups)) if s not in running]:
                ready = next((job for job in pending if job.needs is None or complete(job.needs)), None)
                if ready is None:
                    break
                pending.remove(ready)
                running[slot] = (ready, *_start(ready, groups[slot], log))
            if not running and pending:
                waiting = ", ".join(sorted({job.needs for job in pending}))
                raise JobError(f"runs wait for {waiting}, which no job of this campaign trains")
            time.sleep(poll)
    finally:
        for job, process, lock in running.values():
            process.terminate()
        for job, process, lock in running.values():
            process.wait()
            lock.close()
    return failed


def _start(job, cores, log):
    lock = _lock(job.out)
    where = "" if cores is None else f" [cores {','.join(map(str, cores))}]"
    log(" ".join(job.command) + where)
    with open(job.log, "a") as output:
        process = popen(job.command, cores, stdout=output, stderr=subprocess.STDOUT)
    return process, lock
