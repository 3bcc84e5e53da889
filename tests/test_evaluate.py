"""`train/evaluate.py` and `lns_larq.evaluation`: accuracy, loss, per-class accuracy and
confusion matrix of a saved model, checked against an independent computation (the
normalisation of the test images recomputed here in NumPy, the saved model's own
`predict`, the cross-entropy in float64), for a baseline, an LNS and a BONN model;
and a one-line error for each kind of bad input.

The reference logits come from the very images and batches the evaluation feeds the
model: in a binary network, a round-off difference of the input (float32 against
float64 normalisation: up to 2.4e-7) can flip the sign of an activation near zero
and move an image's logits by a whole binary step; an earlier version of this file
fed NumPy's images and saw the loss differ by 6e-4 (relative) once in a while. The
NumPy normalisation is checked against those images separately, to float32 round-off.

The model is a small binary ResNet-20 (8 channels, 1 block per stage) trained for a
few epochs on the bundled digits, so that its predictions are neither constant nor
all right.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import lns_larq
from lns_larq import bonn, data, evaluation, models
from lns_larq.quantizers import LNSQuantizer

from .conftest import ROOT

SCRIPT = os.path.join(ROOT, "train", "evaluate.py")
LIMIT = 200


def _start(*args):
    """Start the script; `_finish` waits for it (the test computes meanwhile)."""
    return subprocess.Popen([sys.executable, SCRIPT, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _finish(process):
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _evaluate(*args):
    return _finish(_start(*args))


def _error_line(result):
    """The script's last stderr line (TensorFlow may log before it), checked to be its
    one-line error with no traceback anywhere."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("evaluate.py: error: "), result.stderr[-3000:]
    return lines[-1]


def channel_statistics(arrays):
    """Per-channel mean and standard deviation of all training images, computed
    exactly (float64) from value histograms."""
    values = np.arange(256, dtype=np.float64)
    mean, std = [], []
    for c in range(arrays.x_train.shape[-1]):
        counts = np.bincount(arrays.x_train[..., c].ravel(), minlength=256)
        m = counts @ values / counts.sum()
        mean.append(m)
        std.append(np.sqrt(counts @ values**2 / counts.sum() - m**2))
    return np.array(mean), np.array(std)


def normalised_test_images(arrays, n):
    """The first `n` test images normalised per channel with the training statistics,
    in float64, and the largest error float32 arithmetic may make computing them."""
    mean, std = channel_statistics(arrays)
    x = (arrays.x_test[:n].astype(np.float64) - mean) / std
    # (x - m) / s in float32, with m and s rounded to float32: the rounding of m
    # (eps/2 * m), of the difference, of s and of the quotient (eps/2 each, relative
    # to the result) add up to at most eps * (m / s + 2 |result|).
    bound = np.finfo(np.float32).eps * (mean / std + 2 * np.abs(x))
    return x, arrays.y_test[:n], bound


def evaluated_images(arrays, n, batch_size):
    """The batches of images `evaluation.evaluate` feeds the model, concatenated."""
    return np.concatenate([x.numpy() for x, _ in evaluation.test_dataset(arrays, batch_size, n)])


def cross_entropy_tolerance(loss, num_classes, summed=1):
    """The largest difference round-off allows between a mean cross-entropy computed
    in float32 from float32 logits and the float64 value from the same logits.

    Per image, TensorFlow's softmax cross-entropy is log(sum_k exp(z_k - max z)) -
    (z_y - max z): the shift rounds by eps/2 |z_y - max z| <= eps/2 * loss, the sum of
    K exponentials (each within an ulp) by about K/2 eps, the log and the final
    difference by eps/2 each: at most eps * (2 loss + K/2 + 1). Summing `summed` such
    terms in float32 (Keras' metrics) adds up to (summed - 1) eps * loss. Times 2 for
    exp and log implementations within 2 ulp rather than half of one.
    """
    eps = float(np.finfo(np.float32).eps)
    return 2 * eps * ((2 * loss + num_classes / 2 + 1) + (summed - 1) * loss)


def independent_results(model, arrays, n, batch_size=128):
    """Accuracy, loss (with its tolerance) and confusion matrix of `model` (the one
    saved, in memory) on the first `n` test images, from `predict` on the batches
    of images the evaluation feeds it (`batch_size` as the script's default)."""
    images = evaluated_images(arrays, n, batch_size)
    expected, labels, bound = normalised_test_images(arrays, n)
    assert images.dtype == np.float32 and images.shape == expected.shape
    assert np.all(np.abs(images - expected) <= bound), np.max(np.abs(images - expected) - bound)
    logits = model.predict(images, batch_size=batch_size, verbose=0)
    predicted = logits.argmax(axis=1)
    matrix = np.zeros((10, 10), dtype=np.int64)
    for t, p in zip(labels, predicted):
        matrix[t, p] += 1
    z = logits.astype(np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    per_image = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(n), labels]
    loss = float(per_image.mean())
    return dict(accuracy=float(np.mean(predicted == labels)), loss=loss, matrix=matrix,
                loss_tolerance=cross_entropy_tolerance(loss, logits.shape[1]))


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """A small binary ResNet-20 trained briefly on the digits, saved as model.keras."""
    tf.keras.utils.set_random_seed(0)
    model = models.get("resnet20", quantizer="dorefa", num_classes=10, input_shape=(32, 32, 3),
                       stages=(8, 8, 8), blocks=1)
    train, _, _ = data.pipelines(digits, batch_size=32, augment=False)
    epochs = 6
    lr = tf.keras.optimizers.schedules.CosineDecay(0.01, epochs * len(train))
    model.compile(tf.keras.optimizers.Adam(lr),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train, epochs=epochs, verbose=0)
    folder = tmp_path_factory.mktemp("trained")
    path = str(folder / "model.keras")
    model.save(path)
    return model, path


def _check_report(report, reference, n):
    """The report's figures against the independent computation, and consistent."""
    assert report["num_images"] == n
    assert report["accuracy"] == reference["accuracy"]
    # Same logits on both sides: the losses differ by float32 round-off only.
    assert report["loss"] == pytest.approx(reference["loss"], rel=0, abs=reference["loss_tolerance"])
    matrix = np.array(report["confusion_matrix"])
    np.testing.assert_array_equal(matrix, reference["matrix"])
    assert matrix.sum() == n
    assert np.trace(matrix) / n == pytest.approx(report["accuracy"])
    rows = matrix.sum(axis=1)
    assert report["class_counts"] == rows.tolist()
    for c, accuracy in enumerate(report["per_class_accuracy"]):
        if rows[c]:
            assert accuracy == pytest.approx(matrix[c, c] / rows[c])
        else:
            assert accuracy is None


def _check_png(path):
    assert os.path.isfile(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 10_000  # a labelled 10x10 matrix with counts, not a blank


def test_evaluate_digits_matches_independent_computation(trained, digits):
    model, path = trained
    process = _start("--model_path", path, "--dataset", "digits", "--limit", str(LIMIT))
    reference = independent_results(model, digits, LIMIT)
    result = _finish(process)
    assert result.returncode == 0, result.stderr[-3000:]
    out = os.path.join(os.path.dirname(path), "evaluation")  # default: next to the model
    with open(os.path.join(out, "model.json")) as f:
        report = json.load(f)
    _check_report(report, reference, LIMIT)
    # A trained model that is neither constant nor perfect: the check means something.
    assert 0.4 < report["accuracy"] < 1.0, report["accuracy"]
    assert np.count_nonzero(np.array(report["confusion_matrix"]).sum(axis=0)) >= 5
    assert report["model_path"] == os.path.abspath(path)
    assert report["data"]["dataset"] == "digits" and report["data"]["limit"] == LIMIT
    assert report["class_names"] == [str(i) for i in range(10)]
    assert report["from_logits"] is True
    _check_png(os.path.join(out, "model_confusion.png"))
    # The summary on stdout.
    assert f"top-1 accuracy {100 * report['accuracy']:.2f}%" in result.stdout
    assert "per-class accuracy" in result.stdout


def test_library_matches_keras_evaluate_as_training_reports(trained, digits):
    """`evaluation.evaluate` on Arrays gives Keras' `evaluate` figures on the test
    pipeline, the metrics training writes (accuracy, cross-entropy from logits)."""
    model, _ = trained
    # The same batches on both sides (see the module's docstring).
    results = evaluation.evaluate(model, digits, batch_size=128)
    _, _, test = data.pipelines(digits, batch_size=128, augment=False)
    model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    loss, accuracy = model.evaluate(test, verbose=0)
    n = len(digits.y_test)
    assert results["num_images"] == n
    assert results["accuracy"] == pytest.approx(accuracy, abs=1e-6)  # counts: exact in float32
    # Keras sums the per-image losses in float32; evaluate sums them in float64.
    tolerance = cross_entropy_tolerance(results["loss"], digits.num_classes, summed=n)
    assert results["loss"] == pytest.approx(loss, rel=0, abs=tolerance)


def test_evaluate_cifar10_npz(trained, cifar, cifar_path):
    """A CIFAR-10 .npz (the offline copy): its own training statistics normalise the
    test images, and the figure and JSON name the CIFAR-10 classes."""
    model, path = trained
    out = os.path.join(os.path.dirname(path), "cifar")
    process = _start("--model_path", path, "--data_path", cifar_path, "--limit", "100",
                     "--output_dir", out)
    reference = independent_results(model, cifar, 100)
    result = _finish(process)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "model.json")) as f:
        report = json.load(f)
    _check_report(report, reference, 100)
    assert report["class_names"] == list(evaluation.CIFAR10_CLASSES)
    assert report["data"]["dataset"] == "cifar10" and report["data"]["test_images"] == 10000
    _check_png(os.path.join(out, "model_confusion.png"))


@pytest.mark.parametrize("method", ["lns", "bonn"])
def test_evaluate_lns_and_bonn_models(method, trained, digits, tmp_path):
    model, _ = trained
    converted = lns_larq.lnsify(model) if method == "lns" else bonn.bonnify(model)
    path = str(tmp_path / f"{method}.keras")
    converted.save(path)
    out = str(tmp_path / "out")
    process = _start("--model_path", path, "--dataset", "digits", "--limit", "100",
                     "--output_dir", out)
    if method == "lns":
        assert any(isinstance(getattr(layer, "kernel_quantizer", None), LNSQuantizer)
                   for layer in converted.layers)
    else:
        assert isinstance(converted, bonn.BONNModel)
    reference = independent_results(converted, digits, 100)
    result = _finish(process)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, f"{method}.json")) as f:
        report = json.load(f)
    _check_report(report, reference, 100)
    _check_png(os.path.join(out, f"{method}_confusion.png"))


def _plain_model(path, input_shape, classes):
    inputs = tf.keras.Input(input_shape)
    x = tf.keras.layers.GlobalAveragePooling2D()(inputs)
    tf.keras.Model(inputs, tf.keras.layers.Dense(classes)(x), name="plain").save(path)
    return path


def test_missing_model_is_one_clear_line(tmp_path):
    missing = str(tmp_path / "nope.keras")
    result = _evaluate("--model_path", missing, "--dataset", "digits")
    assert _error_line(result) == f"evaluate.py: error: --model_path {missing}: no such file"
    assert result.stderr.strip().splitlines() == [_error_line(result)]  # before TensorFlow loads


def test_corrupt_model_is_one_clear_line(tmp_path):
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a keras file")
    out = tmp_path / "out"
    result = _evaluate("--model_path", str(garbage), "--dataset", "digits", "--output_dir", str(out))
    assert _error_line(result).startswith(
        f"evaluate.py: error: --model_path {garbage}: cannot load the model (")
    assert not out.exists()


@pytest.mark.parametrize("case", ["image_shape", "classes"])
def test_model_and_data_mismatch_is_one_clear_line(case, tmp_path):
    shape, classes = ((16, 16, 3), 10) if case == "image_shape" else ((32, 32, 3), 5)
    path = _plain_model(str(tmp_path / f"{case}.keras"), shape, classes)
    out = tmp_path / "out"
    result = _evaluate("--model_path", path, "--dataset", "digits", "--output_dir", str(out))
    line = _error_line(result)
    if case == "image_shape":
        assert "the data's images have shape (32, 32, 3)" in line
        assert "expects (16, 16, 3)" in line
    else:
        assert "the data has 10 classes" in line and "outputs 5 class scores" in line
    assert not out.exists()


def test_corrupt_data_file_is_one_clear_line(tmp_path):
    model_path = _plain_model(str(tmp_path / "plain.keras"), (32, 32, 3), 10)
    valid = tmp_path / "valid.npz"
    x = np.zeros((4, 32, 32, 3), np.uint8)
    y = np.zeros(4, np.int64)
    np.savez(valid, x_train=x, y_train=y, x_test=x, y_test=y)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(valid.read_bytes()[: valid.stat().st_size // 2])
    out = tmp_path / "out"
    result = _evaluate("--model_path", model_path, "--data_path", str(truncated),
                       "--output_dir", str(out))
    assert _error_line(result).startswith(
        f"evaluate.py: error: {truncated}: not a readable .npz file")
    assert not out.exists()


def test_confusion_matrix_and_plot_in_the_library(tmp_path):
    labels = np.array([0, 0, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 2, 0, 2])
    matrix = evaluation.confusion_matrix(labels, predicted, 4)
    np.testing.assert_array_equal(matrix, [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]])
    path = str(tmp_path / "c.png")
    evaluation.plot_confusion(matrix, path, class_names=["a", "b", "c", "d"], title="t")
    _check_png(path)
