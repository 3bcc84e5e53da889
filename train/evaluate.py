"""Evaluate a saved model on a test set: accuracy, loss, per-class accuracy and the
confusion matrix.

    python train/evaluate.py --model_path runs/<run>/model.keras \
        --data_path ../shared/data/cifar10/cifar10_jpegq75.npz
    python train/evaluate.py --model_path runs/demo/model.keras --dataset digits --limit 200

Any saved `.keras` model loads, LNS and BONN models included. The data is CIFAR-10
(an `.npz` with `x_train, y_train, x_test, y_test`, a `cifar-10-batches-py` folder,
or tensorflow-datasets into --data_dir without --data_path) or the bundled digits
demo; the test images go through the training's test pipeline, so the accuracy and
loss are those `train/fit.py` reports. Writes `<model name>.json` (all the figures)
and `<model name>_confusion.png` to --output_dir (default `<model dir>/evaluation/`)
and prints a summary. See `lns_larq/evaluation.py`.
"""

import json
import os

from absl import app, flags, logging

from cli import fail, model_file

FLAGS = flags.FLAGS
flags.DEFINE_string("model_path", None, "Saved Keras model (.keras or .h5), e.g. runs/<run>/model.keras.")
flags.DEFINE_enum("dataset", "cifar10", ["cifar10", "digits"], "cifar10, or digits (the bundled demo, no download).")
flags.DEFINE_string("data_path", None,
                    "CIFAR-10 .npz file or cifar-10-batches-py folder; default: tensorflow-datasets.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir (download/cache folder), without --data_path.")
flags.DEFINE_integer("limit", 0, "Evaluate on the first N test images only (0: all).", lower_bound=0)
flags.DEFINE_integer("batch_size", 128, "Inference batch size (does not change the results).", lower_bound=1)
flags.DEFINE_string("output_dir", None, "Folder for the JSON and the figure (default: <model dir>/evaluation).")


def load_data(data):
    """The dataset of the flags; exits with a one-line error if it cannot be loaded."""
    from lns_larq.errors import first_line

    try:
        return data.load(FLAGS.dataset, data_path=FLAGS.data_path, data_dir=FLAGS.data_dir)
    except data.DataError as e:
        fail(str(e))
    except Exception as e:  # tensorflow-datasets: download, preparation or cache errors
        if FLAGS.dataset == "cifar10" and FLAGS.data_path is None:
            fail(f"tensorflow-datasets could not load cifar10 (--data_dir {FLAGS.data_dir}): "
                 f"{first_line(e)}; or give a local copy with --data_path")
        raise


def data_description():
    if FLAGS.dataset == "digits":
        return {"dataset": "digits", "source": "scikit-learn digits (bundled demo)"}
    if FLAGS.data_path:
        return {"dataset": "cifar10", "source": os.path.abspath(FLAGS.data_path)}
    return {"dataset": "cifar10", "source": "tensorflow-datasets", "data_dir": FLAGS.data_dir}


def main(argv):
    logging.set_verbosity(logging.ERROR)
    model_file(argv, FLAGS.model_path)  # before TensorFlow loads: fail fast
    if FLAGS.dataset == "digits" and FLAGS.data_path:
        fail("--data_path is for CIFAR-10; the digits demo is bundled")
    model_path = os.path.abspath(FLAGS.model_path)
    output_dir = FLAGS.output_dir or os.path.join(os.path.dirname(model_path), "evaluation")
    stem = os.path.splitext(os.path.basename(model_path))[0]

    import lns_larq  # noqa: F401  (selects Keras 2 before TensorFlow loads; registers LNS, BONN)
    from lns_larq import data, evaluation, keras_utils
    from lns_larq.errors import first_line

    try:
        model = keras_utils.load_model(FLAGS.model_path)
    except ValueError as e:
        fail(f"--model_path {e}")
    arrays = load_data(data)
    try:
        evaluation.check_compatible(model, arrays.input_shape, arrays.num_classes)
        results = evaluation.evaluate(model, arrays, batch_size=FLAGS.batch_size, limit=FLAGS.limit)
    except evaluation.EvaluationError as e:
        fail(f"{FLAGS.model_path} on {FLAGS.dataset}: {e}")

    description = data_description()
    description.update(split="test", limit=FLAGS.limit or None, test_images=int(len(arrays.y_test)))
    report = {"model_path": model_path, "data": description, **results}
    json_path = os.path.join(output_dir, f"{stem}.json")
    figure_path = os.path.join(output_dir, f"{stem}_confusion.png")
    try:
        os.makedirs(output_dir, exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2)
    except OSError as e:
        fail(f"--output_dir {output_dir}: cannot write ({first_line(e)})")
    title = (f"{FLAGS.model_path}\n{FLAGS.dataset} test, {results['num_images']} images: "
             f"top-1 accuracy {100 * results['accuracy']:.2f}%")
    try:
        evaluation.plot_confusion(results["confusion_matrix"], figure_path,
                                  class_names=results["class_names"], title=title)
    except ImportError:
        fail(f"matplotlib is needed for the confusion matrix figure (pip install matplotlib); "
             f"the figures are in {json_path}")
    except OSError as e:
        fail(f"--output_dir {output_dir}: cannot write the figure ({first_line(e)})")

    source = description["source"]
    print(f"model  {FLAGS.model_path}")
    print(f"data   {FLAGS.dataset} test split ({source}), {results['num_images']} images")
    print(evaluation.format_summary(results))
    print(f"wrote {json_path} and {figure_path}")


if __name__ == "__main__":
    app.run(main)
