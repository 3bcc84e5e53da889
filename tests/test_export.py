"""Export through Larq Compute Engine: bake, convert, count ops, verify (issue 4).

The models are random ResNet-20s whose batch normalisation is calibrated (so
that activations, signs and logits have realistic spread) and whose LNS mapping
networks are random, not warm-started: their binary weights differ from sign(W)
on about half of the weights, so baking has something to get right.
"""

import os
import subprocess
import sys

import lns_larq  # noqa: F401  # isort: skip  (selects Keras 2 before TensorFlow loads)
import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from lns_larq import export, lns, models
from lns_larq.keras_utils import all_layers, is_binarized_conv
from lns_larq.quantizers import LNSQuantizer, quantized_kernel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY_CONVS = 18  # ResNet-20: 3 stages x 3 blocks x 2 binary 3x3 convs


def calibrate_batch_norm(model, images):
    """Set every batch norm's moving statistics to those of `images`."""
    norms = [l for l in all_layers(model) if isinstance(l, tf.keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer in norms:
        layer.momentum = 0.9


def lns_model(quantizer, seed=0):
    """A calibrated ResNet-20 baseline and its LNS conversion (random mappings)."""
    tf.keras.utils.set_random_seed(seed)
    baseline = models.get("resnet20", quantizer=quantizer)
    noise = np.random.RandomState(seed).standard_normal((64, 32, 32, 3)).astype(np.float32)
    calibrate_batch_norm(baseline, noise)  # normalised images are ~N(0, 1) per channel
    model = lns_larq.lnsify(baseline)
    return baseline, model


def flipped_fraction(layer):
    """Fraction of binary weights of an LNS layer that differ from sign(W)."""
    latent = layer.kernel.latent_variable.numpy()
    return float(np.mean(np.sign(quantized_kernel(layer).numpy()) != np.where(latent >= 0, 1, -1)))


@pytest.fixture(scope="module")
def dorefa_models():
    return lns_model("dorefa")


@pytest.fixture(scope="module")
def lns_export(dorefa_models, tmp_path_factory):
    _, model = dorefa_models
    folder = tmp_path_factory.mktemp("lns")
    path, float_path = str(folder / "lns.tflite"), str(folder / "lns_float32.tflite")
    return export.export_tflite(model, path, float_path=float_path)


@pytest.mark.parametrize("quantizer", ["dorefa", "xnor", "binarynet"])
def test_bake_keeps_predictions_and_removes_every_mapping_weight(quantizer, dorefa_models):
    baseline, model = dorefa_models if quantizer == "dorefa" else lns_model(quantizer)
    baked = export.bake(model)

    # Nothing of the mapping networks is left: the baked model has exactly the
    # baseline's weights, and no LNS quantizer.
    assert not lns.lns_layers(baked)
    assert not any(isinstance(getattr(l, "kernel_quantizer", None), LNSQuantizer) for l in baked.layers)
    assert sorted(w.name for w in baked.weights) == sorted(w.name for w in baseline.weights)
    assert sum(w.shape.num_elements() for w in baked.weights) == baseline.count_params()
    assert len(model.weights) > len(baked.weights)

    flips = [flipped_fraction(layer) for layer in lns.lns_layers(model)]
    assert min(flips) > 0 and np.mean(flips) > 0.01
    for layer in lns.lns_layers(model):
        target = baked.get_layer(layer.name)
        assert is_binarized_conv(target)
        mapped = quantized_kernel(layer).numpy()
        latent = target.kernel.latent_variable.numpy()
        # The baked kernel holds the mapped weights, not s * sign(W)...
        np.testing.assert_array_equal(latent, mapped)
        # ...and its sign quantizer gives them back: +/- one scale per output channel.
        np.testing.assert_allclose(quantized_kernel(target).numpy(), mapped, rtol=1e-5, atol=0)
        magnitudes = np.abs(latent).reshape(-1, latent.shape[-1])
        np.testing.assert_allclose(magnitudes, np.broadcast_to(magnitudes[:1], magnitudes.shape), rtol=1e-6)

    images = np.random.RandomState(1).standard_normal((16, 32, 32, 3)).astype(np.float32)
    expected = model(images, training=False).numpy()
    got = baked(images, training=False).numpy()
    same = np.all(np.isclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max()), axis=1)
    if quantizer == "binarynet":  # no scale to recompute: the baked network is bit-exact
        np.testing.assert_array_equal(got, expected)
    # With a scale, the baked quantizer recomputes mean|K| = s up to ~1e-7; a binary
    # activation within that of zero then takes the other sign and changes its
    # image's logits (measured: 1 image of 16 for xnor, seed 0). Every other image
    # matches to float rounding.
    assert same.sum() >= 14, same
    # The mapping matters: the baseline (sign of the same latent weights) predicts differently.
    assert np.abs(baseline(images, training=False).numpy() - expected).max() > 1e-2


def _assert_all_binary_convs_converted(report):
    assert report.binary_layers == BINARY_CONVS
    assert report.bconv_ops == report.binary_layers
    assert report.op_counts["LceBconv2d"] == BINARY_CONVS
    # One LceQuantize per binary conv input (no conv's output is bit-packed: each
    # feeds a float residual addition).
    assert report.op_counts["LceQuantize"] == BINARY_CONVS
    # The float convs of ResNet-20: the first conv and two downsampling shortcuts.
    assert report.op_counts["CONV_2D"] == 3
    assert report.unconverted == []


def test_lns_resnet20_exports_every_binary_conv_as_lce_bconv(lns_export):
    report = lns_export
    _assert_all_binary_convs_converted(report)
    assert report.model_name == "resnet20_dorefa_lns"
    with open(report.path, "rb") as f:
        written = f.read()
    assert written == report.flatbuffer and len(written) == report.size_bytes
    assert export.op_counts(written) == report.op_counts
    # Bit-packed binary weights: the file is far below the float32 model of the same
    # architecture (the float parts bound the ratio: ~16x for ResNet-20).
    assert os.path.getsize(report.float32_path) == report.float32_size_bytes
    assert export.op_counts(open(report.float32_path, "rb").read()).get("LceBconv2d", 0) == 0
    assert report.size_ratio > 10
    channels = [(16, 16)] * 6 + [(16, 32)] + [(32, 32)] * 5 + [(32, 64)] + [(64, 64)] * 5
    assert report.binary_params == sum(9 * c_in * c_out for c_in, c_out in channels)
    table = report.table()
    assert "LceBconv2d ops" in table and "18  (all converted)" in table and "size ratio" in table


def test_baseline_resnet20_exports_every_binary_conv_as_lce_bconv(dorefa_models, tmp_path):
    baseline, _ = dorefa_models
    report = export.export_tflite(baseline, str(tmp_path / "baseline.tflite"), float_reference=False)
    _assert_all_binary_convs_converted(report)
    assert report.float32_size_bytes is None and os.path.isfile(report.path)


def test_resnet20_prelu_exports_every_binary_conv_as_lce_bconv(tmp_path):
    model = models.get("resnet20_prelu")
    path = tmp_path / "prelu.tflite"
    report = export.export_tflite(model, str(path), float_reference=False)
    _assert_all_binary_convs_converted(report)
    counts = export.op_counts(path.read_bytes())
    assert counts["LceBconv2d"] == 18 and counts["PRELU"] == 18


def test_resnet20_hardtanh_exports_every_binary_conv_as_lce_bconv(tmp_path):
    report = export.export_tflite(models.get("resnet20_hardtanh"), str(tmp_path / "hardtanh.tflite"),
                                  float_reference=False)
    _assert_all_binary_convs_converted(report)


def test_keras_and_lce_agree_on_cifar10_test_images(dorefa_models, lns_export, cifar_path):
    _, model = dorefa_models
    images, labels = export.cifar10_test_images(cifar_path, 200)
    assert images.shape == (200, 32, 32, 3) and abs(float(images.mean())) < 0.5
    agreement = export.verify(model, lns_export.flatbuffer, images, labels)

    # The model is not degenerate: its predictions vary across images.
    assert len(np.unique(model.predict(images, verbose=0).argmax(-1))) >= 3
    assert agreement.n == 200
    assert agreement.top1_agreement >= 0.98
    # Almost every image matches to float precision; the rest differ because an
    # activation within rounding of zero flipped sign (see `export.verify`).
    assert agreement.close_fraction >= 0.9
    assert agreement.max_abs_logit_diff < 5.0
    assert agreement.keras_accuracy is not None and agreement.lce_accuracy is not None


def _binary_conv(name, **options):
    kwargs = dict(
        filters=32, kernel_size=3, padding="same", pad_values=1.0, use_bias=False,
        input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
    )
    return lq.layers.QuantConv2D(name=name, **{**kwargs, **options})


def test_binary_convs_that_stay_float_are_reported_by_name(tmp_path):
    inputs = tf.keras.Input((8, 8, 32))
    x = _binary_conv("one_padded")(inputs)
    # LCE 0.16 converts a zero-padded "same" binary conv too (with a padding
    # correction), so it must not be reported.
    x = _binary_conv("zero_padded", pad_values=0.0)(x)
    x = _binary_conv("grouped", groups=2)(x)
    x = _binary_conv("float_input", input_quantizer=None)(x)
    model = tf.keras.Model(inputs, x, name="mixed")
    path = tmp_path / "mixed.tflite"

    with pytest.raises(export.ExportError) as error:
        export.export_tflite(model, str(path), float_reference=False)

    message = str(error.value)
    assert "2 of the 4 binary layers" in message
    assert "grouped: grouped convolution (groups=2)" in message
    assert "float_input: its input is not binarized" in message
    assert "one_padded" not in message and "zero_padded" not in message
    report = error.value.report
    assert (report.binary_layers, report.bconv_ops) == (4, 2)
    # Found by the signs of each LceBconv2d's filter, although all four layers
    # have the same shape.
    assert report.unconverted == ["grouped", "float_input"]
    assert not path.exists()


def test_binary_dense_layer_is_counted_and_reported_unconverted(tmp_path):
    # LCE has no binary dense op: a binary QuantDense deploys as a float
    # FULLY_CONNECTED, which the export used to report as "all converted".
    inputs = tf.keras.Input((8, 8, 32))
    x = _binary_conv("conv")(inputs)
    x = tf.keras.layers.Flatten()(x)
    x = lq.layers.QuantDense(
        16, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False, name="binary_dense"
    )(x)
    model = tf.keras.Model(inputs, x, name="with_dense")
    path = tmp_path / "with_dense.tflite"

    with pytest.raises(export.ExportError) as error:
        export.export_tflite(model, str(path), float_reference=False)

    report = error.value.report
    assert report.binary_layer_names == ["conv", "binary_dense"]
    assert (report.binary_layers, report.bconv_ops) == (2, 1)
    assert report.unconverted == ["binary_dense"] and not report.ok
    assert report.op_counts["FULLY_CONNECTED"] == 1
    table = report.table()
    assert "1  (1 of 2 not converted)" in table
    assert [line.split()[-1] for line in table.splitlines() if line.startswith("not converted")] == ["binary_dense"]
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert "1 of the 2 binary layers of 'with_dense'" in message
    assert "binary_dense: LCE has no binary dense op" in message
    assert not path.exists()


def test_converter_failure_is_one_line_naming_the_model(monkeypatch):
    import larq_compute_engine as lce

    def failing_converter(*args, **kwargs):
        raise ValueError("cannot create std::vector larger than max_size()\n  (C++ frames)")

    monkeypatch.setattr(lce, "convert_saved_model", failing_converter)
    inputs = tf.keras.Input((8, 8, 32))
    model = tf.keras.Model(inputs, _binary_conv("conv")(inputs), name="tiny")
    with pytest.raises(export.ExportError) as error:
        export.export_tflite(model, float_reference=False)
    assert str(error.value) == (
        "LCE could not convert 'tiny': ValueError: cannot create std::vector larger than max_size()"
    )
    assert error.value.report is None


@pytest.mark.parametrize("name", ["alexnet", "alexnet_lns"])
def test_alexnet_at_224_exports_every_binary_layer_as_lce_bconv(name, tmp_path):
    # The paper's input size. fc6's kernel, 6 x 6 x 256 x 4096 > 2^25 weights, is too
    # large for TensorFlow's constant folding: unless the export makes the binary
    # kernels constants, its quantizer stays as runtime ops and (as a QuantDense)
    # crashed the converter with "cannot create std::vector larger than max_size()".
    # The LNS variant is baked first; a narrow mapping keeps the test light (the
    # baked model has no mapping weight, whatever the width).
    model = models.get(name, **({"width": 0.25} if name.endswith("_lns") else {}))
    path = tmp_path / f"{name}.tflite"
    report = export.export_tflite(model, str(path), float_reference=False)

    assert report.binary_layer_names == ["conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    assert report.unconverted == [] and report.ok
    counts = export.op_counts(path.read_bytes())
    assert counts["LceBconv2d"] == 6
    assert counts["FULLY_CONNECTED"] == 1 and counts["CONV_2D"] == 1  # logits, conv1
    assert not {"SIGN", "MEAN", "MUL"} & set(counts)  # no quantizer left at run time
    assert report.binary_params == (
        5 * 5 * 96 * 256 + 9 * 256 * 384 + 9 * 384 * 384 + 9 * 384 * 256 + 9216 * 4096 + 4096 * 4096
    )
    # Bit-packed: 58.2 M binary weights take 7.3 MB, the float part 16.7 MB.
    assert report.size_bytes < 25e6


def test_model_without_binary_layer_warns():
    inputs = tf.keras.Input((8, 8, 3))
    model = tf.keras.Model(inputs, tf.keras.layers.Conv2D(4, 3)(inputs), name="float_only")
    with pytest.warns(UserWarning, match="no binary layer"):
        report = export.export_tflite(model, float_reference=False)
    assert (report.binary_layers, report.bconv_ops) == (0, 0)
    assert report.op_counts == {"CONV_2D": 1}


def _export_cli(*args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "train", "export.py"), *args],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )


def test_export_cli_missing_or_unreadable_model_is_one_clear_line(tmp_path):
    missing = tmp_path / "nope.keras"
    result = _export_cli("--model_path", str(missing), "--output", str(tmp_path / "a.tflite"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"export.py: error: --model_path {missing}: no such file"]

    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a keras file")
    result = _export_cli(
        "--model_path", str(garbage), "--output", str(tmp_path / "b.tflite"), "--verify", "0"
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"export.py: error: --model_path {garbage}: cannot load the model")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "b.tflite").exists()


def test_exporting_an_uncompiled_model_logs_no_false_compile_warning(tmp_path):
    """tf_keras's legacy save warns that the "compiled metrics have yet to be built"
    for any uncompiled model; export drops exactly that message (it was printed
    three times per export, in the demo too)."""
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    tf.get_logger().addHandler(handler)
    try:
        export.export_tflite(models.get("resnet8", quantizer="dorefa"), str(tmp_path / "m.tflite"),
                             float_reference=False)
    finally:
        tf.get_logger().removeHandler(handler)
    assert not any("compiled metrics" in record.getMessage() for record in records)
