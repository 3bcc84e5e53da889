"""Campaign throughput: one run on every core against `--jobs` runs at once, each
pinned to its own cores, as `train/reproduce.py --jobs` runs them.

    python train/benchmark_jobs.py --models resnet20,resnet20_lns --jobs 2

For each model, `train/benchmark.py --models <model>` runs first alone, in one
process on all the cores this one may use (TensorFlow's default threads), then as
`--jobs` copies started together, each pinned to its own group of cores with one
TensorFlow intra-op thread per core and one inter-op thread (`lns_larq.jobs`).
Each copy's throughput is batch / its median step time (a fixed random batch, the
same training step `fit` runs); the copies' throughputs add up. The gain is the
copies' sum over the single process's: how much faster a campaign of independent
runs goes with `--jobs`. Run it on idle cores (stop a campaign with `kill -STOP`
and resume it with `kill -CONT`): the first line gives the load average.
`--output` (default runs/benchmark_jobs.json) receives every figure.
"""

import json
import os
import subprocess
import sys
import tempfile

from absl import app, flags

from cli import fail, write_json

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARK = os.path.join(ROOT, "train", "benchmark.py")
flags.DEFINE_list("models", ["resnet20", "resnet20_lns"], "Registry models, one measurement each.")
flags.DEFINE_integer("jobs", 2, "Copies at once, each on its own cores.", lower_bound=2)
flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1)
flags.DEFINE_integer("steps", 30, "Timed steps per process.", lower_bound=1)
flags.DEFINE_integer("warmup", 5, "Untimed warm-up steps per process.", lower_bound=1)
flags.DEFINE_string("output", "runs/benchmark_jobs.json", "JSON file for every figure.")


def benchmark(model, folder, name, cores=None):
    """Start `benchmark.py` for `model` (pinned to `cores` with one thread per core,
    or unpinned); return the process and its JSON output path."""
    from lns_larq import jobs

    output = os.path.join(folder, f"{name}.json")
    command = [sys.executable, BENCHMARK, f"--models={model}", f"--batch_size={FLAGS.batch_size}",
               f"--steps={FLAGS.steps}", f"--warmup={FLAGS.warmup}", f"--output={output}"]
    process = jobs.popen(command, cores, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, output


def finished(process, output):
    """The result of a `benchmark` process: its one model's figures."""
    text, _ = process.communicate()
    if process.returncode:
        fail(f"benchmark.py exited {process.returncode}: {text.strip().splitlines()[-1] if text.strip() else ''}")
    with open(output) as f:
        report = json.load(f)
    return report, report["results"][0]


def measure(model, folder, groups):
    single_report, single = finished(*benchmark(model, folder, f"{model}_single"))
    started = [benchmark(model, folder, f"{model}_job{k}", cores) for k, cores in enumerate(groups)]
    copies = [finished(*s)[1] for s in started]
    total = sum(c["train_images_per_s"] for c in copies)
    return dict(
        model=model,
        single_step_ms=1000 * single["train_step_s"]["median"],
        single_images_per_s=single["train_images_per_s"],
        job_cores=groups,
        job_step_ms=[1000 * c["train_step_s"]["median"] for c in copies],
        jobs_images_per_s=total,
        gain=total / single["train_images_per_s"],
        cpu=single_report["cpu"],
    )


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    import lns_larq  # noqa: F401  (Keras 2 before TensorFlow, for the model names below)
    from lns_larq import jobs, models

    unknown = [m for m in FLAGS.models if m not in models.available()]
    if unknown:
        fail(f"unknown models {unknown}; choose from {', '.join(models.available())}")
    try:
        groups = jobs.core_groups(FLAGS.jobs)
    except jobs.JobError as e:
        fail(str(e))
    load = os.getloadavg()
    print(f"load average {'/'.join(f'{v:.1f}' for v in load)} (1/5/15 min) at the start; "
          f"{FLAGS.jobs} jobs on cores {groups}; batch {FLAGS.batch_size}, {FLAGS.steps} timed steps each")
    with tempfile.TemporaryDirectory() as folder:
        rows = [measure(model, folder, groups) for model in FLAGS.models]
    print(f"CPU: {rows[0]['cpu']} (the single process's view)")
    print(f"{'model':<16}{'1 process, all cores':>22}{'img/s':>8}{f'{FLAGS.jobs} pinned jobs, step each':>30}"
          f"{'img/s in all':>14}{'gain':>8}")
    for r in rows:
        steps = " / ".join(f"{s:.0f}" for s in r["job_step_ms"])
        print(f"{r['model']:<16}{r['single_step_ms']:>19.0f} ms{r['single_images_per_s']:>8.0f}"
              f"{steps + ' ms':>30}{r['jobs_images_per_s']:>14.0f}{r['gain']:>7.2f}x")
    report = dict(load_average_before=load, load_average_after=os.getloadavg(), jobs=FLAGS.jobs,
                  batch_size=FLAGS.batch_size, steps=FLAGS.steps, warmup=FLAGS.warmup,
                  command=" ".join([os.path.basename(sys.executable), *sys.argv]), results=rows)
    if FLAGS.output:
        write_json(FLAGS.output, report)


if __name__ == "__main__":
    app.run(main)
