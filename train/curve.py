"""The training curve of one `train/fit.py` run: accuracy and learning rate per epoch.

    python train/curve.py --run campaigns/recipe/adam_lr5e-3_cosine_e50 --output docs/recipe_curve.png

Plots the training accuracy, the validation accuracy (the hold-out's, or the test
set's for a run without one), the test accuracy when it was logged beside a
hold-out, and the learning rate, from the run's `log.csv`.
"""

import csv
import json
import os

from absl import app, flags

from cli import fail

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "A train/fit.py run folder (log.csv; metrics.json if complete).")
flags.DEFINE_string("output", None, "PNG to write (default <run>/curve.png).")
flags.DEFINE_string("title", None, "Figure title (default: the run's model, data and wall time; an "
                    "unfinished run's folder and epochs).")
flags.mark_flag_as_required("run")


def default_title(run, metrics, epochs):
    """The run's model, quantizer, data and wall time; a run still in flight (no
    metrics.json, hence no config) is named by its folder and the epochs it has."""
    if not metrics:
        return f"{os.path.normpath(run)}, in flight: {epochs} epochs"
    config = metrics.get("config", {})
    return (f"{config.get('model', '')} ({config.get('quantizer', '')}), "
            f"{os.path.basename(config.get('data_path') or config.get('dataset', ''))}"
            + (f", {metrics['wall_time_s'] / 60:.0f} min" if metrics.get("wall_time_s") else ""))


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    log_path = os.path.join(FLAGS.run, "log.csv")
    if not os.path.exists(log_path):
        fail(f"{FLAGS.run} has no log.csv")
    with open(log_path) as f:
        rows = list(csv.DictReader(f))
    metrics = {}
    if os.path.exists(os.path.join(FLAGS.run, "metrics.json")):
        with open(os.path.join(FLAGS.run, "metrics.json")) as f:
            metrics = json.load(f)
    holdout = metrics.get("validation") == "holdout" or "test_accuracy" in rows[0]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(epochs, [100 * float(r["accuracy"]) for r in rows], label="training (augmented)")
    ax.plot(epochs, [100 * float(r["val_accuracy"]) for r in rows],
            label="validation hold-out" if holdout else "test (no hold-out)")
    if "test_accuracy" in rows[0]:
        ax.plot(epochs, [100 * float(r["test_accuracy"]) for r in rows], label="test")
    if metrics.get("test_accuracy") is not None and "test_accuracy" not in rows[0] and holdout:
        ax.plot([epochs[-1]], [100 * metrics["test_accuracy"]], "k*", markersize=10,
                label=f"test, last epoch: {100 * metrics['test_accuracy']:.2f} %")
    ax.set_xlabel("epoch")
    ax.set_ylabel("top-1 accuracy %")
    ax.grid(alpha=0.3)
    lr_axis = ax.twinx()
    lr_axis.plot(epochs, [float(r["lr"]) for r in rows], color="gray", linestyle=":", label="learning rate")
    lr_axis.set_ylabel("learning rate")
    lines = ax.get_lines() + lr_axis.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="lower right")
    ax.set_title(FLAGS.title or default_title(FLAGS.run, metrics, len(rows)), fontsize=9)
    fig.tight_layout()
    output = FLAGS.output or os.path.join(FLAGS.run, "curve.png")
    fig.savefig(output, dpi=90)
    print(f"wrote {output}")


if __name__ == "__main__":
    app.run(main)
