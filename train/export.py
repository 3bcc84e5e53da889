"""Export a trained model to a Larq Compute Engine `.tflite` and verify it.

    python train/export.py --model_path runs/<run>/model.keras --output model.tflite \
        --verify 1000

LNS models are baked first (mapping networks folded into the binary weights). The
export fails, naming the layers, if a binary conv did not become an `LceBconv2d`;
with --verify N, the first N CIFAR-10 test images run through Keras and LCE's
interpreter and the top-1 agreement must reach --min_agreement. The float32 model of
the same architecture is written next to the output (--float_output) for
`train/benchmark_tflite.py`.
"""

import json
import os

from absl import app, flags, logging

from cli import fail, model_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "Saved Keras model (.keras or .h5), e.g. runs/<run>/model.keras.")
flags.DEFINE_string("output", None, "Output .tflite (default: the model path with .tflite).")
flags.DEFINE_string("float_output", None, "float32 .tflite of the same architecture, for benchmark_tflite.py "
                    "(default: <output>_float32.tflite; '' to not write it).")
flags.DEFINE_integer("verify", 1000, "Verify on the first N CIFAR-10 test images (0: skip).", lower_bound=0)
flags.DEFINE_float("min_agreement", 0.995, "Fail if the Keras/LCE top-1 agreement is below this.")
flags.DEFINE_string("data_path", os.path.join(REPO, "..", "shared", "data", "cifar10", "cifar10_jpegq75.npz"),
                    "CIFAR-10 .npz file or cifar-10-batches-py folder for --verify.")
flags.DEFINE_integer("num_threads", 1, "Interpreter threads for --verify.", lower_bound=1)
flags.DEFINE_string("report_json", None, "Also write the report as JSON here.")


def run_config(model_path):
    """`validation_size` and `train_subset` of the run that saved `model_path`, if known:
    they decide the normalisation statistics."""
    metrics = os.path.join(os.path.dirname(os.path.abspath(model_path)), "metrics.json")
    try:
        with open(metrics) as f:
            config = json.load(f)["config"]
        return dict(validation_size=config["validation_size"], train_subset=config["train_subset"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def main(argv):
    logging.set_verbosity(logging.ERROR)
    model_file(argv, FLAGS.model_path)  # before TensorFlow loads: fail fast
    output = FLAGS.output or os.path.splitext(FLAGS.model_path)[0] + ".tflite"
    float_output = FLAGS.float_output
    if float_output is None:
        float_output = os.path.splitext(output)[0] + "_float32.tflite"

    import lns_larq  # noqa: F401  (selects Keras 2 before TensorFlow loads)
    from lns_larq import export
    from lns_larq.data import DataError

    try:
        model = export.load_model(FLAGS.model_path)
    except ValueError as e:
        fail(f"--model_path {e}")
    try:
        report = export.export_tflite(model, output, float_path=float_output or None)
    except export.ExportError as e:
        if e.report is not None:
            print(e.report.table())
        fail(str(e))
    if FLAGS.verify:
        try:
            images, labels = export.cifar10_test_images(
                FLAGS.data_path, FLAGS.verify, **run_config(FLAGS.model_path)
            )
        except DataError as e:
            fail(f"--data_path: {e}")
        report.agreement = export.verify(model, report.flatbuffer, images, labels, FLAGS.num_threads)
    print(report.table())
    if FLAGS.report_json:
        with open(FLAGS.report_json, "w") as f:
            f.write(report.to_json())
    if report.agreement and report.agreement.top1_agreement < FLAGS.min_agreement:
        fail(
             f"top-1 agreement {100 * report.agreement.top1_agreement:.2f}% between Keras and "
             f"LCE is below --min_agreement {100 * FLAGS.min_agreement:.2f}%"
        )


if __name__ == "__main__":
    app.run(main)
