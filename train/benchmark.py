"""Training and inference throughput (images/s) and peak memory of registry models.

    python train/benchmark.py --models resnet20,resnet20_lns --batch_size 128

Each model runs in its own process (so peak memory is its own), on a fixed random
batch of the model's input shape (data loading is not measured), after warm-up
steps that trace and compile the training function. The table reports the training
step time relative to the first model, e.g. the cost of LNS over the baseline.

With `--data_path` (or `--dataset digits`), each model also trains the same number
of steps on the real training pipeline (`lns_larq.data.pipelines`: shuffle,
augmentation, normalisation), and the table adds its images/s and the ratio
pipeline / fixed batch: what the input pipeline costs `fit`.

    python train/benchmark.py --models resnet20 --data_path ../shared/data/cifar10/cifar10_jpegq75.npz
"""

import json
import resource
import subprocess
import sys
import time

from absl import app, flags, logging

import lns_larq  # noqa: F401

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["resnet20", "resnet20_lns"], "Registry models to compare; the first is the reference.")
flags.DEFINE_string("quantizer", "dorefa", "Baseline weight quantizer of binary models.")
flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1)
flags.DEFINE_integer("steps", 20, "Timed training steps.", lower_bound=1)
flags.DEFINE_integer("warmup", 5, "Untimed warm-up steps.", lower_bound=1)
flags.DEFINE_list("input_shape", ["32", "32", "3"], "Input shape H,W,C.")
flags.DEFINE_integer("num_classes", 10, "Classes.")
flags.DEFINE_float("mapping_width", None, "Hidden width of the LNS mapping networks of *_lns models "
                   "(default: the quantizer's, 2 as in the paper).", lower_bound=0)
flags.DEFINE_string("data_path", None, "Also time training on this dataset's real input pipeline.")
flags.DEFINE_enum("dataset", None, ["cifar10", "digits"], "Dataset for the pipeline timing (default: "
                  "cifar10 with --data_path).")
flags.DEFINE_string("_worker", None, "Internal: measure this one model and print JSON.")


def measure(name):
    import numpy as np
    import tensorflow as tf

    from lns_larq import models

    shape = tuple(int(v) for v in FLAGS.input_shape)
    options = dict(num_classes=FLAGS.num_classes, input_shape=shape)
    if models.has_methods(models.split_name(name)[0]):
        options["quantizer"] = FLAGS.quantizer
    if FLAGS.mapping_width is not None and models.split_name(name)[1] == "lns":
        options["width"] = FLAGS.mapping_width
    model = models.get(name, **options)
    model.compile(tf.keras.optimizers.SGD(0.01, momentum=0.9),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((FLAGS.batch_size, *shape)).astype(np.float32)
    y = rng.integers(0, FLAGS.num_classes, FLAGS.batch_size)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(data, steps_per_epoch=FLAGS.warmup, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=FLAGS.steps, epochs=1, verbose=0)
    train_step = (time.perf_counter() - start) / FLAGS.steps
    pipeline_images_per_s = None
    if FLAGS.data_path or FLAGS.dataset:
        from lns_larq import data as data_lib

        arrays = data_lib.load(FLAGS.dataset or "cifar10", data_path=FLAGS.data_path)
        train, _, _ = data_lib.pipelines(arrays, batch_size=FLAGS.batch_size)
        train = train.repeat()
        model.fit(train, steps_per_epoch=FLAGS.warmup, epochs=1, verbose=0)
        start = time.perf_counter()
        model.fit(train, steps_per_epoch=FLAGS.steps, epochs=1, verbose=0)
        pipeline_images_per_s = FLAGS.batch_size * FLAGS.steps / (time.perf_counter() - start)
    predict = tf.function(lambda v: model(v, training=False))
    predict(x)
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        predict(x).numpy()
    infer_step = (time.perf_counter() - start) / FLAGS.steps
    return {
        "model": name,
        "params": model.count_params(),
        "train_step_s": train_step,
        "train_images_per_s": FLAGS.batch_size / train_step,
        "inference_images_per_s": FLAGS.batch_size / infer_step,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "pipeline_images_per_s": pipeline_images_per_s,
    }


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if FLAGS._worker:
        print("RESULT " + json.dumps(measure(FLAGS._worker)))
        return
    passed = [a for a in sys.argv[1:] if not a.startswith("--models")]
    results = []
    for name in FLAGS.models:
        proc = subprocess.run([sys.executable, __file__, *passed, f"--_worker={name}"],
                              capture_output=True, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"benchmark.py: error: {name} failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(lines[-1][len("RESULT "):]))
    ref = results[0]["train_step_s"]
    print(f"batch {FLAGS.batch_size}, {FLAGS.steps} timed steps after {FLAGS.warmup} warm-up, "
          f"input {','.join(FLAGS.input_shape)}")
    pipeline = results[0]["pipeline_images_per_s"] is not None
    print(f"{'model':<22}{'params':>11}{'train step':>12}{'train img/s':>13}{'infer img/s':>13}"
          f"{'peak RSS':>11}{'step ratio':>12}" + (f"{'pipeline img/s':>16}{'pipeline/fixed':>16}" if pipeline else ""))
    for r in results:
        line = (f"{r['model']:<22}{r['params']:>11,}{r['train_step_s'] * 1000:>10.0f}ms"
                f"{r['train_images_per_s']:>13.0f}{r['inference_images_per_s']:>13.0f}"
                f"{r['peak_rss_mib']:>8.0f}MiB{r['train_step_s'] / ref:>11.2f}x")
        if pipeline:
            line += f"{r['pipeline_images_per_s']:>16.0f}{r['pipeline_images_per_s'] / r['train_images_per_s']:>16.2f}"
        print(line)


if __name__ == "__main__":
    app.run(main)
