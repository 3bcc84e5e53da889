"""Training step time, inference throughput and the LNS / baseline step ratio of
registry models, timed one step at a time.

    python train/benchmark.py --models resnet20,resnet20_lns --batch_size 128

All models live in one process. Each is compiled as `fit` compiles it, and its
training step is Keras' own `train_function` (what `fit` runs per batch), called on
a fixed random batch. After `--warmup` untimed steps (tracing, first allocations),
the models take turns step by step, `--steps` rounds, alternating which goes first,
so that the other jobs of a shared machine slow them alike. Each step is timed on
its own, up to its loss value, in wall time and in CPU time (of all the process's
threads). The table gives medians and their spread (25th to 75th percentile), and
the step ratio to the first model as the median of the per-round ratios: the cost
of LNS over the baseline. On a busy machine the wall-time ratio wanders (measured
on 2 cores beside 3 other jobs: 0.97x to 1.14x for one pair); the CPU-time ratio,
the work a step takes, stays within a few hundredths.

With `--data_path` (or `--dataset digits`), each model then also trains on the real
training pipeline (`lns_larq.data.pipelines`: shuffle, augmentation,
normalisation), in blocks of `--block` steps alternating with blocks on the fixed
batch; the ratio pipeline / fixed is the median of the per-round ratios of block
medians. Blocks, not single steps: the pipeline prefetches, so the first steps of a
block live on batches made before it and the first steps after it pay for the
refill; block medians leave those few steps out. The CPU time of a pipeline step
includes the pipeline's own threads: what the input pipeline costs a training step.

    python train/benchmark.py --models resnet20 --data_path ../shared/data/cifar10/cifar10_jpegq75.npz

The first lines name the CPU, its cores and whether oneDNN is on, and the machine's
load average; `--output` (default runs/benchmark.json) receives the table and every
step time as JSON. The peak memory is the process's, all models together: run one
model per command for its own.
"""

import os
import resource
import sys
import time

from absl import app, flags, logging

import lns_larq  # noqa: F401  (Keras 2 and oneDNN before TensorFlow loads)
from cli import write_json

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["resnet20", "resnet20_lns"], "Registry models to compare; the first is the reference.")
flags.DEFINE_string("quantizer", "dorefa", "Baseline weight quantizer of binary models.")
flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1)
flags.DEFINE_integer("steps", 30, "Timed training steps per model (and per input with --data_path); below 20 "
                     "the medians and spreads are rough (the table says so).", lower_bound=1)
flags.DEFINE_integer("warmup", 5, "Untimed warm-up steps per model and input.", lower_bound=1)
flags.DEFINE_integer("block", 10, "With --data_path: consecutive steps on one input before switching.", lower_bound=1)
flags.DEFINE_list("input_shape", ["32", "32", "3"], "Input shape H,W,C.")
flags.DEFINE_integer("num_classes", 10, "Classes.", lower_bound=2)
flags.DEFINE_float("mapping_width", None, "Hidden width of the LNS mapping networks of *_lns models "
                   "(default: the quantizer's, 2 as in the paper).", lower_bound=0)
flags.DEFINE_string("data_path", None, "Also time training on this dataset's real input pipeline.")
flags.DEFINE_enum("dataset", None, ["cifar10", "digits"], "Dataset for the pipeline timing (default: "
                  "cifar10 with --data_path).")
flags.DEFINE_string("output", "runs/benchmark.json", "JSON file for the table and every step time.")


def percentiles(values):
    """Median, 25th and 75th percentile, minimum of `values`."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(v)), "p25": float(np.percentile(v, 25)),
            "p75": float(np.percentile(v, 75)), "min": float(v.min())}


def interleave(steps, rounds, block=1):
    """Run the callables `steps` (name -> step) in turns: `rounds` rounds, each giving
    every step `block` consecutive calls, the order reversed every other round.
    Returns name -> {"wall": [...], "cpu": [...]}, per-round lists of seconds per
    call (CPU: of all the process's threads)."""
    names = list(steps)
    times = {name: {"wall": [], "cpu": []} for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            wall, cpu = [], []
            for _ in range(block):
                cpu_start, start = time.process_time(), time.perf_counter()
                steps[name]()
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - cpu_start)
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
    return times


def flat(blocks):
    return [t for block in blocks for t in block]


def paired_ratios(times, name, reference, kind):
    """Per-round ratio of the median `kind` ("wall" or "cpu") time of `name` to that of
    `reference`."""
    import numpy as np

    return [float(np.median(a) / np.median(b)) for a, b in zip(times[name][kind], times[reference][kind])]


def build(name, shape):
    import tensorflow as tf

    from lns_larq import models

    options = dict(num_classes=FLAGS.num_classes, input_shape=shape)
    if models.has_methods(models.split_name(name)[0]):
        options["quantizer"] = FLAGS.quantizer
    if FLAGS.mapping_width is not None and models.split_name(name)[1] == "lns":
        options["width"] = FLAGS.mapping_width
    model = models.get(name, **options)
    model.compile(tf.keras.optimizers.SGD(0.01, momentum=0.9),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def training_step(model, dataset):
    """One call of Keras' `train_function` (a `fit` step) on the next batch of
    `dataset`, finished: its loss is read back."""
    train_function = model.make_train_function()
    iterator = iter(dataset)

    def step():
        logs = train_function(iterator)
        float(logs["loss"])

    return step


def inference_step(model, x):
    """One inference call of `model` on `x`, finished (its outputs read back)."""
    import tensorflow as tf

    @tf.function(autograph=False)  # the layers need no conversion
    def predict(images):
        return model(images, training=False)

    def step():
        predict(x).numpy()

    return step


def measure():
    import numpy as np
    import tensorflow as tf

    from lns_larq import cpu

    shape = tuple(int(v) for v in FLAGS.input_shape)
    arrays = None
    if FLAGS.data_path or FLAGS.dataset:  # loaded first: a data error stops before any timing
        from lns_larq import data as data_lib

        arrays = data_lib.load(FLAGS.dataset or "cifar10", data_path=FLAGS.data_path)
        if arrays.input_shape != shape or arrays.num_classes != FLAGS.num_classes:
            raise data_lib.DataError(f"the data has images {arrays.input_shape} and {arrays.num_classes} "
                                     f"classes; pass --input_shape and --num_classes to match")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((FLAGS.batch_size, *shape)).astype(np.float32)
    y = rng.integers(0, FLAGS.num_classes, FLAGS.batch_size)
    fixed = tf.data.Dataset.from_tensors((x, y)).repeat()
    x = tf.constant(x)
    load_before = os.getloadavg()
    built = {name: build(name, shape) for name in FLAGS.models}
    train = {name: training_step(model, fixed) for name, model in built.items()}
    infer = {name: inference_step(model, x) for name, model in built.items()}
    for name in FLAGS.models:
        for _ in range(FLAGS.warmup):
            train[name]()
            infer[name]()
    train_times = interleave(train, FLAGS.steps)
    infer_times = interleave(infer, FLAGS.steps)
    reference = FLAGS.models[0]
    results = []
    for name, model in built.items():
        wall = flat(train_times[name]["wall"])
        inference = percentiles(flat(infer_times[name]["wall"]))
        results.append({
            "model": name,
            "params": int(model.count_params()),
            "train_step_s": percentiles(wall),
            "train_step_cpu_s": percentiles(flat(train_times[name]["cpu"])),
            "train_images_per_s": FLAGS.batch_size / float(np.median(wall)),
            "inference_step_s": inference,
            "inference_images_per_s": FLAGS.batch_size / inference["median"],
            "step_ratio": percentiles(paired_ratios(train_times, name, reference, "wall")),
            "step_ratio_cpu": percentiles(paired_ratios(train_times, name, reference, "cpu")),
            "train_step_times_s": wall,
            "train_step_cpu_times_s": flat(train_times[name]["cpu"]),
        })
    if arrays is not None:
        for result in results:
            model = built[result["model"]]
            pipeline, _, _ = data_lib.pipelines(arrays, batch_size=FLAGS.batch_size)
            inputs = {"fixed": train[result["model"]],
                      "pipeline": training_step(model, pipeline.repeat())}
            for _ in range(FLAGS.warmup):
                inputs["pipeline"]()
            times = interleave(inputs, -(-FLAGS.steps // FLAGS.block), FLAGS.block)
            wall = flat(times["pipeline"]["wall"])
            result.update({
                "pipeline_step_s": percentiles(wall),
                "pipeline_step_cpu_s": percentiles(flat(times["pipeline"]["cpu"])),
                "pipeline_fixed_step_s": percentiles(flat(times["fixed"]["wall"])),
                "pipeline_fixed_step_cpu_s": percentiles(flat(times["fixed"]["cpu"])),
                "pipeline_images_per_s": FLAGS.batch_size / float(np.median(wall)),
                "pipeline_ratio": percentiles(paired_ratios(times, "pipeline", "fixed", "wall")),
                "pipeline_ratio_cpu": percentiles(paired_ratios(times, "pipeline", "fixed", "cpu")),
                "pipeline_step_times_s": wall,
                "pipeline_fixed_step_times_s": flat(times["fixed"]["wall"]),
            })
    return {
        "cpu": cpu.describe(),
        "cpu_model": cpu.model_name(),
        "cores": cpu.cores(),
        "avx512": cpu.has_avx512(),
        "onednn": cpu.onednn_enabled(),
        "tensorflow": tf.__version__,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "batch_size": FLAGS.batch_size,
        "steps": FLAGS.steps,
        "warmup": FLAGS.warmup,
        "block": FLAGS.block,
        "input_shape": list(shape),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "results": results,
    }


def table(report):
    """The report as lines of text."""
    load = "/".join(f"{v:.1f}" for v in report["load_average_before"])
    lines = [
        f"CPU: {report['cpu']}; TensorFlow {report['tensorflow']}; load average {load} (1/5/15 min) "
        "at the start",
        f"batch {report['batch_size']}, input {','.join(map(str, report['input_shape']))}; "
        f"{report['steps']} timed steps per model after {report['warmup']} warm-up steps, models "
        "interleaved step by step; median (25th-75th percentile); CPU: of all threads",
        f"{'model':<16}{'params':>11}{'train step':>22}{'CPU':>9}{'train img/s':>12}{'infer img/s':>12}"
        f"{'step ratio':>22}{'CPU ratio':>22}",
    ]

    def spread(s, scale=1000, unit=" ms", digits=0):
        return (f"{s['median'] * scale:.{digits}f}{unit} ({s['p25'] * scale:.{digits}f}-"
                f"{s['p75'] * scale:.{digits}f})")

    def ms(s):
        return f"{s['median'] * 1000:.0f} ms"

    for r in report["results"]:
        lines.append(f"{r['model']:<16}{r['params']:>11,}{spread(r['train_step_s']):>22}"
                     f"{ms(r['train_step_cpu_s']):>9}{r['train_images_per_s']:>12.0f}"
                     f"{r['inference_images_per_s']:>12.0f}{spread(r['step_ratio'], 1, 'x', 2):>22}"
                     f"{spread(r['step_ratio_cpu'], 1, 'x', 2):>22}")
    if "pipeline_step_s" in report["results"][0]:
        lines += [
            f"input pipeline against the fixed batch, alternating blocks of {report['block']} steps:",
            f"{'model':<16}{'fixed step':>22}{'CPU':>9}{'pipeline step':>22}{'CPU':>9}{'pipeline img/s':>16}"
            f"{'pipeline/fixed':>22}{'CPU ratio':>22}",
        ]
        for r in report["results"]:
            lines.append(f"{r['model']:<16}{spread(r['pipeline_fixed_step_s']):>22}"
                         f"{ms(r['pipeline_fixed_step_cpu_s']):>9}{spread(r['pipeline_step_s']):>22}"
                         f"{ms(r['pipeline_step_cpu_s']):>9}{r['pipeline_images_per_s']:>16.0f}"
                         f"{spread(r['pipeline_ratio'], 1, 'x', 2):>22}"
                         f"{spread(r['pipeline_ratio_cpu'], 1, 'x', 2):>22}")
    if report["steps"] < 20:
        lines.append(f"only {report['steps']} timed steps: medians and spreads are rough (use --steps 20 or more)")
    lines.append(f"peak RSS of the process (all models) {report['peak_rss_mib']:.0f} MiB; load average "
                 f"{'/'.join(f'{v:.1f}' for v in report['load_average_after'])} at the end")
    return lines


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        sys.exit(f"benchmark.py: error: unexpected arguments {argv[1:]}")
    from lns_larq import data, models

    unknown = [name for name in FLAGS.models if name not in models.available()]
    if unknown:
        sys.exit(f"benchmark.py: error: unknown models {unknown}; choose from {', '.join(models.available())}")
    if len(FLAGS.input_shape) != 3 or not all(v.isdigit() and int(v) > 0 for v in FLAGS.input_shape):
        sys.exit(f"benchmark.py: error: --input_shape must be H,W,C, got {','.join(FLAGS.input_shape)}")
    try:
        report = measure()
    except data.DataError as e:
        sys.exit(f"benchmark.py: error: {e}")
    print("\n".join(table(report)))
    if FLAGS.output:
        write_json(FLAGS.output, report)


if __name__ == "__main__":
    app.run(main)
