"""Evaluation of a trained classifier on a test set: top-1 accuracy, cross-entropy,
per-class accuracy and the confusion matrix (and its figure).

`evaluate` runs the model in inference mode on the test split of a
`lns_larq.data.Arrays` through the project's own test pipeline
(`lns_larq.data.pipelines`: per-channel normalisation with the statistics of the
whole training split), so its accuracy and loss are the `test_accuracy` and
`test_loss` that training writes to `metrics.json`. The loss is the sparse
categorical cross-entropy of the outputs, taken as logits (the project's models end
in a `Dense` without activation) unless the model's last layer is a softmax.
`train/evaluate.py` is the command-line front end.

```python
import lns_larq
from lns_larq import data, evaluation, keras_utils, models

arrays = data.load("digits")  # or data.load("cifar10", data_path="cifar10.npz")
model = models.get("resnet20", quantizer="dorefa")  # or keras_utils.load_model("runs/<run>/model.keras")
evaluation.check_compatible(model, arrays.input_shape, arrays.num_classes)
results = evaluation.evaluate(model, arrays, limit=100)
print(evaluation.format_summary(results))
evaluation.plot_confusion(results["confusion_matrix"], "/tmp/confusion.png",
                          class_names=results["class_names"], title="untrained ResNet-20, digits")
```
"""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from lns_larq import data as lns_data
from lns_larq.keras_utils import load_model

__all__ = [
    "CIFAR10_CLASSES",
    "EvaluationError",
    "check_compatible",
    "class_names",
    "confusion_matrix",
    "evaluate",
    "format_summary",
    "load_model",
    "outputs_are_logits",
    "plot_confusion",
    "test_dataset",
]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


class EvaluationError(ValueError):
    """Model and data that do not fit together."""


def class_names(dataset: str | None, num_classes: int) -> list[str]:
    """Display names of the classes: CIFAR-10's, the digits, or `"0"`, `"1"`, ..."""
    if dataset == "cifar10" and num_classes == len(CIFAR10_CLASSES):
        return list(CIFAR10_CLASSES)
    return [str(i) for i in range(num_classes)]


def check_compatible(model: tf.keras.Model, input_shape: Sequence[int | None], num_classes: int) -> None:
    """Check that `model` takes images of `input_shape` (HWC) and outputs one score
    per class of `num_classes`.

    # Raises
        EvaluationError: naming the mismatch.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise EvaluationError(
            f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; evaluation needs one image input and one output of class scores"
        )
    expected = tuple(model.input_shape[1:])
    input_shape = tuple(input_shape)
    if len(expected) != len(input_shape) or any(
        e is not None and s is not None and e != s for e, s in zip(expected, input_shape)
    ):
        shown = tuple("?" if e is None else e for e in expected)
        raise EvaluationError(
            f"the data's images have shape {input_shape}, the model {model.name!r} expects {shown}"
        )
    output_shape = tuple(model.output_shape)
    if len(output_shape) != 2:
        raise EvaluationError(
            f"model {model.name!r} outputs shape {output_shape[1:]}, not one score per class"
        )
    if output_shape[-1] != num_classes:
        raise EvaluationError(
            f"the data has {num_classes} classes, the model {model.name!r} outputs "
            f"{output_shape[-1]} class scores"
        )


def outputs_are_logits(model: tf.keras.Model) -> bool:
    """Whether `model` outputs logits: False only if its last layer is a softmax."""
    last = model.layers[-1] if model.layers else None
    if isinstance(last, tf.keras.layers.Softmax):
        return False
    activation = getattr(last, "activation", None)
    return activation is not tf.keras.activations.softmax and getattr(
        activation, "__name__", ""
    ) != "softmax"


def test_dataset(arrays: lns_data.Arrays, batch_size: int = 128, limit: int = 0) -> tf.data.Dataset:
    """The test split of `arrays` (its first `limit` images; 0: all) through the
    project's test pipeline, `lns_larq.data.pipelines`: batched `(images, labels)`,
    normalised with the statistics of the whole training split, as in training."""
    if limit:
        arrays = lns_data.Arrays(
            arrays.x_train, arrays.y_train, arrays.x_test[:limit], arrays.y_test[:limit],
            arrays.num_classes, arrays.name,
        )
    _, _, test = lns_data.pipelines(arrays, batch_size=batch_size, augment=False)
    return test


def confusion_matrix(labels: ArrayLike, predictions: ArrayLike, num_classes: int) -> np.ndarray:
    """`num_classes` x `num_classes` counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
    return matrix


def _batches(source, batch_size):
    """`(images, labels)` batches of a `Dataset` or of an `(images, labels)` pair."""
    if isinstance(source, tf.data.Dataset):
        yield from source
        return
    images, labels = source
    for i in range(0, len(images), batch_size):
        yield images[i : i + batch_size], labels[i : i + batch_size]


def _predict_function(model):
    """`model(images, training=False)` as one graph for any batch size.

    Traced once without AutoGraph (the models' layers need none, and converting
    Keras' code costs seconds per trace); with AutoGraph if that tracing fails.
    """
    spec = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)]

    def call(images):
        return model(images, training=False)

    plain = tf.function(call, input_signature=spec, autograph=False)
    converted = tf.function(call, input_signature=spec)
    state = {"plain": True}

    def predict(images):
        if state["plain"]:
            try:
                return plain(images)
            except TypeError:  # includes OperatorNotAllowedInGraphError
                state["plain"] = False
        return converted(images)

    return predict


def evaluate(model: tf.keras.Model, source: Any, batch_size: int = 128, limit: int = 0,
             from_logits: bool | None = None, names: Sequence[str] | None = None) -> dict:
    """Evaluate `model` (inference mode) on a test set; returns a JSON-ready dict.

    # Arguments
        model: A Keras classifier (one image input, one output of class scores).
        source: A `lns_larq.data.Arrays` (its test split goes through `test_dataset`,
            the training normalisation), or already preprocessed data: a
            `tf.data.Dataset` of `(images, labels)` batches or an `(images, labels)`
            pair of arrays.
        batch_size: Batch size of the inference (it does not change the results).
        limit: Evaluate on the first `limit` test images only (0: all).
        from_logits: Whether the outputs are logits; None: `outputs_are_logits(model)`.
        names: Class names (default: `class_names` of the dataset).

    # Returns
        A dict: `accuracy` (top-1), `loss` (mean sparse categorical cross-entropy),
        `num_images`, `num_classes`, `class_names`, `per_class_accuracy` (one per
        class, None for a class without test images), `class_counts` (test images per
        class), `confusion_matrix` (rows: true class, columns: predicted class) and
        `from_logits`.

    # Raises
        EvaluationError: if model and data do not fit together, a label is outside
            the model's classes, or there is no image to evaluate.
    """
    if limit < 0:
        raise EvaluationError(f"limit must be >= 0, got {limit}")
    num_classes = model.output_shape[-1]
    dataset_name = None
    if isinstance(source, lns_data.Arrays):
        check_compatible(model, source.input_shape, source.num_classes)
        dataset_name = source.name
        source = test_dataset(source, batch_size, limit)
        limit = 0
    elif isinstance(source, tf.data.Dataset):
        check_compatible(model, source.element_spec[0].shape.as_list()[1:], num_classes)
    else:
        check_compatible(model, np.shape(source[0])[1:], num_classes)
    if from_logits is None:
        from_logits = outputs_are_logits(model)
    predict = _predict_function(model)

    labels, predictions, losses = [], [], []
    seen = 0
    for images, batch_labels in _batches(source, batch_size):
        if limit:
            images, batch_labels = images[: limit - seen], batch_labels[: limit - seen]
        batch_labels = np.asarray(batch_labels, np.int64).reshape(-1)
        if batch_labels.size == 0:
            break
        if batch_labels.min() < 0 or batch_labels.max() >= num_classes:
            raise EvaluationError(
                f"labels must be in 0..{num_classes - 1} (the model's classes), got "
                f"{batch_labels.min()}..{batch_labels.max()}"
            )
        outputs = predict(tf.convert_to_tensor(images, tf.float32))
        labels.append(batch_labels)
        predictions.append(np.argmax(outputs.numpy(), axis=-1))
        losses.append(tf.keras.losses.sparse_categorical_crossentropy(
            batch_labels, outputs, from_logits=from_logits).numpy().astype(np.float64))
        seen += batch_labels.size
        if limit and seen >= limit:
            break
    if not seen:
        raise EvaluationError("no test image to evaluate")
    labels, predictions, losses = map(np.concatenate, (labels, predictions, losses))
    matrix = confusion_matrix(labels, predictions, num_classes)
    counts = matrix.sum(axis=1)
    per_class = [float(matrix[c, c] / counts[c]) if counts[c] else None for c in range(num_classes)]
    loss = float(losses.mean())
    return {
        "accuracy": float(np.mean(predictions == labels)),
        "loss": loss if math.isfinite(loss) else None,
        "num_images": int(seen),
        "num_classes": int(num_classes),
        "class_names": list(names) if names is not None else class_names(dataset_name, num_classes),
        "per_class_accuracy": per_class,
        "class_counts": counts.tolist(),
        "confusion_matrix": matrix.tolist(),
        "from_logits": bool(from_logits),
    }


def plot_confusion(matrix: ArrayLike, path: str, class_names: Sequence[str] | None = None,
                   title: str | None = None) -> str:
    """Write the confusion matrix `matrix` (rows: true class, columns: predicted) as
    a figure to `path` (PNG): counts in the cells, shaded by the fraction of the true
    class's images. Uses matplotlib's Agg canvas (no display, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    rows = matrix.sum(axis=1, keepdims=True)
    shade = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    size = max(4.5, 0.6 * n + 2.5)
    fig = Figure(figsize=(size + 1.2, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(shade, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    long_names = max(map(len, names)) > 2
    ax.set_xticks(range(n), names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fontsize = 9 if n <= 10 else max(4, 90 // n)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=fontsize,
                    color="white" if shade[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def format_summary(results: dict) -> str:
    """A short readable summary of `evaluate`'s results."""
    loss = "n/a" if results["loss"] is None else f"{results['loss']:.4f}"
    lines = [
        f"top-1 accuracy {100 * results['accuracy']:.2f}%  loss {loss}  "
        f"({results['num_images']} images)",
        "per-class accuracy:",
    ]
    width = max(map(len, results["class_names"]))
    for name, accuracy, count in zip(
        results["class_names"], results["per_class_accuracy"], results["class_counts"]
    ):
        shown = "   n/a" if accuracy is None else f"{100 * accuracy:5.1f}%"
        lines.append(f"  {name:<{width}}  {shown}  (n={count})")
    return "\n".join(lines)
