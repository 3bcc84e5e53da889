import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from lns_larq import models
from lns_larq.keras_utils import is_binarized_conv
from lns_larq.quantizers import quantized_kernel


def test_registry():
    names = models.available()
    assert {"resnet20", "resnet20_fp", "resnet20_lns"} <= set(names)
    assert "resnet20_fp_lns" not in names
    with pytest.raises(ValueError, match="Unknown model 'resnet21'.*resnet20_lns"):
        models.get("resnet21")


def test_resnet8_is_resnet20_with_one_block_per_stage():
    model = models.get("resnet8", quantizer="xnor")
    full = models.get("resnet20", quantizer="xnor")
    assert model.name == "resnet8_xnor" and model.output_shape == (None, 10)
    binary = [layer.name for layer in model.layers if is_binarized_conv(layer)]
    assert binary == [f"stage{s}_block1_conv{c}" for s in (1, 2, 3) for c in (1, 2)]
    assert {layer.name for layer in model.layers} <= {layer.name for layer in full.layers}
    assert len(models.get("resnet8_lns").losses) == 0 and "resnet8_bonn" in models.available()


def test_resnet20_shape_and_layers():
    model = models.get("resnet20", quantizer="dorefa")
    assert model.output_shape == (None, 10)
    binary = [layer for layer in model.layers if is_binarized_conv(layer)]
    assert len(binary) == 18
    # First conv, downsampling shortcuts and classifier stay in full precision.
    assert not is_binarized_conv(model.get_layer("conv1"))
    assert isinstance(model.get_layer("stage2_block1_conv1_down"), tf.keras.layers.Conv2D)
    assert all(layer.pad_values == 1.0 and layer.padding == "same" for layer in binary)
    assert model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0).shape == (2, 10)


def test_resnet20_prelu_is_resnet20_with_a_prelu_after_every_binary_conv():
    plain, prelu = models.get("resnet20"), models.get("resnet20_prelu")
    assert prelu.name == "resnet20_prelu_dorefa" and prelu.output_shape == (None, 10)
    binary = [layer.name for layer in prelu.layers if is_binarized_conv(layer)]
    assert binary == [layer.name for layer in plain.layers if is_binarized_conv(layer)]
    # Each binary conv -> its BN -> a PReLU with one slope per channel -> the addition.
    for name in binary:
        act = prelu.get_layer(f"{name}_prelu")
        assert isinstance(act, tf.keras.layers.PReLU)
        assert act.input.node.layer.name == f"{name}_bn"
        assert act.alpha.shape == (1, 1, prelu.get_layer(name).filters)
    assert prelu.count_params() - plain.count_params() == 672  # 6 x (16 + 32 + 64) slopes
    lns = models.get("resnet20_prelu_lns")
    assert sum(isinstance(getattr(layer, "kernel_quantizer", None), models.lns.LNSQuantizer)
               for layer in lns.layers) == 18


def test_resnet20_hardtanh_bounds_every_sign_input_to_the_estimator_window():
    """IR-Net's block: a hardtanh after the first conv's BN and after every
    addition, so every sign sees inputs in [-1, 1]; the plain network's do not."""
    from lns_larq.activations import sign_inputs

    plain, bounded = models.get("resnet20"), models.get("resnet20_hardtanh")
    assert bounded.name == "resnet20_hardtanh_dorefa" and bounded.count_params() == plain.count_params()
    binary = [layer.name for layer in bounded.layers if is_binarized_conv(layer)]
    assert binary == [layer.name for layer in plain.layers if is_binarized_conv(layer)]
    for name in binary:
        add = bounded.get_layer(f"{name}_add")
        assert bounded.get_layer(f"{name}_hardtanh").input is add.output
    bounded.set_weights(plain.get_weights())  # the same parameters: only the clip differs
    x = 3.0 * np.random.default_rng(0).standard_normal((8, 32, 32, 3)).astype(np.float32)
    assert max(row["outside"] for row in sign_inputs(bounded, x)) == 0.0
    assert min(row["outside"] for row in sign_inputs(plain, x)) > 0.0
    lns = models.get("resnet20_hardtanh_lns")
    assert sum(isinstance(getattr(layer, "kernel_quantizer", None), models.lns.LNSQuantizer)
               for layer in lns.layers) == 18


@pytest.mark.parametrize("quantizer", ["dorefa", "xnor", "binarynet"])
def test_every_binary_conv_binarizes(quantizer):
    model = models.get("resnet20", quantizer=quantizer)
    for layer in model.layers:
        if not is_binarized_conv(layer):
            continue
        latent = layer.kernel.latent_variable.numpy()
        kernel = quantized_kernel(layer).numpy()
        scale = {
            "dorefa": np.abs(latent).mean(),
            "xnor": np.abs(latent).mean(axis=(0, 1, 2)),
            "binarynet": 1.0,
        }[quantizer]
        np.testing.assert_allclose(np.abs(kernel), np.broadcast_to(scale, kernel.shape), rtol=1e-5)
        np.testing.assert_array_equal(np.sign(kernel), np.where(latent >= 0, 1, -1))
        # The layer convolves with exactly that kernel.
        with lq.context.quantized_scope(True):
            np.testing.assert_allclose(tf.convert_to_tensor(layer.kernel), kernel)
    # Binary activations: every binary conv's input quantizer is the sign.
    assert all(isinstance(layer.input_quantizer, lq.quantizers.SteSign)
               for layer in model.layers if is_binarized_conv(layer))


def test_full_precision_reference_has_no_binary_conv():
    model = models.get("resnet20_fp")
    assert not any(is_binarized_conv(layer) for layer in model.layers)


def test_unknown_quantizer():
    with pytest.raises(ValueError, match="Unknown quantizer 'ternary'"):
        models.get("resnet20", quantizer="ternary")
