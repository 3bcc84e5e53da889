"""lns_larq.activations and train/sign_inputs.py: what the sign activations see."""

import os
import subprocess
import sys

import numpy as np
import pytest

import lns_larq  # noqa: F401  # isort: skip  (Keras 2 before TensorFlow)
import larq as lq
import tensorflow as tf

from lns_larq import activations, models

from .conftest import ROOT


def _probe_model():
    """Two binary convs on known inputs: the image itself (window 1), and three times
    the image through a sign with window 2; a full-precision conv between them."""
    image = tf.keras.Input((4, 4, 1))
    first = lq.layers.QuantConv2D(2, 1, input_quantizer="ste_sign", name="first")(image)
    tripled = tf.keras.layers.Lambda(lambda t: 3 * t, name="triple")(image)
    second = lq.layers.QuantConv2D(2, 1, input_quantizer=lq.quantizers.SteSign(clip_value=2.0),
                                   name="second")(tripled)
    dense = tf.keras.layers.Conv2D(2, 1, name="full_precision")(image)
    return tf.keras.Model(image, tf.keras.layers.Add()([first, second, dense]))


def test_sign_inputs_measures_each_binary_layer_on_its_own_input():
    x = np.random.default_rng(0).uniform(-2, 2, size=(37, 4, 4, 1)).astype(np.float32)
    rows = activations.sign_inputs(_probe_model(), x, batch_size=10)  # 37 = 3 full batches and one of 7
    assert [row["layer"] for row in rows] == ["first", "second"]  # the full-precision conv is not measured
    first, second = rows
    assert first["window"] == 1.0 and second["window"] == 2.0
    # Counts of entries: exact, whatever the batching.
    assert first["outside"] == np.mean(np.abs(x) > 1)
    assert second["outside"] == np.mean(np.abs(3 * x) > 2)
    # float32 inputs, float64 sums over 592 entries: agreement to float32's precision.
    assert first["std"] == pytest.approx(np.std(x.astype(np.float64)), rel=1e-6)
    assert second["std"] == pytest.approx(3 * np.std(x.astype(np.float64)), rel=1e-6)
    assert second["mean_abs"] == pytest.approx(3 * np.mean(np.abs(x.astype(np.float64))), rel=1e-6)


def test_sign_inputs_of_a_resnet_in_inference_mode():
    model = models.get("resnet8")
    x = np.random.default_rng(1).normal(size=(8, 32, 32, 3)).astype(np.float32)
    rows = activations.sign_inputs(model, x, batch_size=3)
    assert len(rows) == 6  # resnet8's 6 binary convs
    # Inference mode: batch norm's moving statistics, so the batching changes nothing.
    again = activations.sign_inputs(model, x, batch_size=8)
    for a, b in zip(rows, again):
        assert a["outside"] == pytest.approx(b["outside"], abs=1e-12)
        assert a["std"] == pytest.approx(b["std"], rel=1e-5)


def test_a_model_without_binary_activations_is_an_error():
    with pytest.raises(ValueError, match="has no layer that binarizes its input"):
        activations.sign_inputs(models.get("resnet20_fp"), np.zeros((1, 32, 32, 3), np.float32))


def test_approx_sign_has_the_unit_window():
    assert activations.ste_window(lq.quantizers.ApproxSign()) == 1.0
    assert activations.ste_window(lq.quantizers.SteSign(clip_value=0.5)) == 0.5


def test_sign_inputs_cli_prints_a_row_per_layer(tmp_path):
    path = str(tmp_path / "m.keras")
    models.get("resnet8").save(path)  # digits: 32 x 32 x 3, as CIFAR-10
    script = os.path.join(ROOT, "train", "sign_inputs.py")
    output = tmp_path / "s.json"
    result = subprocess.run([sys.executable, script, path, path, "--dataset", "digits", "--validation_size", "300",
                             "--images", "50", "--output", str(output)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert "on 50 hold-out images" in lines[0]
    rows = [line.split() for line in lines if line.startswith("stage")]
    assert len(rows) == 6 and rows[0][1:3] == rows[0][3:5]  # the same model twice: the same figures
    assert output.exists()
    missing = subprocess.run([sys.executable, script, str(tmp_path / "none.keras")], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].endswith("no such file: " + str(tmp_path / "none.keras"))
