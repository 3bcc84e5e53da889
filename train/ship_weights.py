"""Ship a trained model's weights with the package, loadable by name.

    python train/ship_weights.py --run campaigns/short/dorefa/seed0/baseline --name resnet20
    python train/ship_weights.py --run campaigns/short/dorefa/seed0/lns --name resnet20_lns --checkpoint best.keras

Reads the run's `model.keras` (or `--checkpoint best.keras`, the epoch its hold-out
selected) and `metrics.json` (its quantizer and command),
bakes an LNS model into its inference network, writes
`lns_larq/weights/<name>_<weights>.weights.h5` and its entry in
`lns_larq/weights/manifest.json` (SHA-256, test accuracy on the whole test split
and on its first 1,000 images, data, command). Weights that replace others need
`--why`, kept with the old file's SHA-256 and figures (`previous` in the manifest,
a table in lns_larq/weights/README.md). See `lns_larq/shipping.py`.
"""

import json
import os

from absl import app, flags

from cli import fail

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("run", None, "A complete train/fit.py run folder (model.keras, metrics.json).")
flags.DEFINE_string("name", None, "Model name the weights load under, e.g. resnet20 or resnet20_lns.")
flags.DEFINE_string("weights", "cifar10", "Weights name.")
flags.DEFINE_string("data_path", os.path.join(ROOT, "..", "shared", "data", "cifar10", "cifar10_jpegq75.npz"),
                    "The CIFAR-10 copy the run trained on (its test split measures the weights).")
flags.DEFINE_enum("checkpoint", "model.keras", ["model.keras", "best.keras"],
                  "model.keras (the last epoch) or best.keras (the best validation epoch).")
flags.DEFINE_string("directory", None, "Where the weights file and its manifest entry go (default: the package's "
                    "lns_larq/weights, so that models.get loads them); another folder keeps a candidate aside.")
flags.DEFINE_string("why", None, "Why these weights replace the ones shipping under the name (required then): "
                    "kept with the old file's SHA-256 and figures in the manifest's `previous`.")
flags.mark_flags_as_required(["run", "name"])


def _relative(command):
    """The run's command with this checkout's absolute paths made relative to it,
    so the manifest reads the same on every clone."""
    return command.replace(ROOT + os.sep, "")


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    from lns_larq import data, export, models, pretrained, shipping

    directory = FLAGS.directory or pretrained.WEIGHTS_DIR
    key = f"{FLAGS.name}/{FLAGS.weights}"
    try:
        shipping.require_why(pretrained.read_manifest(directory), key, FLAGS.why, f" in {directory}")
    except ValueError as e:
        fail(f"{e}")

    metrics_path = os.path.join(FLAGS.run, "metrics.json")
    if not os.path.exists(metrics_path):
        fail(f"{FLAGS.run} is not a complete run (no metrics.json)")
    with open(metrics_path) as f:
        metrics = json.load(f)
    # A name loads one architecture (lns_larq.models.get): a resnet20_prelu run
    # cannot ship as resnet20, nor an LNS run as the baseline it started from.
    trained = metrics.get("model")
    if trained != FLAGS.name:
        fail(f"{FLAGS.run} trained {trained}, not {FLAGS.name}: ship it as --name {trained}")
    try:
        models.split_name(FLAGS.name)
        model = export.load_model(os.path.join(FLAGS.run, FLAGS.checkpoint))
        arrays = data.load("cifar10", data_path=FLAGS.data_path)
    except (ValueError, data.DataError) as e:
        fail(f"{e}")
    config = metrics["config"]
    held_out = config.get("validation_size", 0)
    description = (f"CIFAR-10, JPEG q75 copy ({os.path.basename(FLAGS.data_path)})"
                   + (f", {held_out} training images held out" if held_out else ""))
    # The images the run held out to select its epoch (the same for every seed).
    holdout = data.split_validation(arrays, held_out)[1] if held_out else None
    item = shipping.save(
        model, FLAGS.name, FLAGS.weights, config["quantizer"], arrays.x_test, arrays.y_test,
        data=description, command=_relative(metrics["command"]) + f"  # {FLAGS.checkpoint}",
        holdout=holdout, directory=directory, why=FLAGS.why,
    )
    print(f"{FLAGS.name} (weights={FLAGS.weights!r}): {item.file}, "
          f"{os.path.getsize(os.path.join(directory, item.file)) / 1024:.0f} KiB, "
          f"test accuracy {100 * item.test_accuracy:.2f} % "
          f"(first 1,000: {100 * item.first_1000_accuracy:.1f} %)"
          + (f", hold-out {100 * item.holdout_accuracy:.2f} %" if item.holdout_accuracy is not None else "")
          + f"; the run's own figures: last epoch "
          f"{100 * metrics['test_accuracy']:.2f} %"
          + (f", hold-out-selected {100 * selected:.2f} %"
             if (selected := metrics.get("selected_test_accuracy")) else ""))


if __name__ == "__main__":
    app.run(main)
