import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import lns_larq
from lns_larq import losses, models
from lns_larq.callbacks import lns_state
from lns_larq.lns import lns_layers, mapping_only
from lns_larq.quantizers import LNSQuantizer, quantized_kernel


def _lns_conv(filters=6, c_in=4, **options):
    conv = lq.layers.QuantConv2D(
        filters, 3, padding="same", pad_values=1.0, use_bias=False,
        input_quantizer="ste_sign", kernel_quantizer=LNSQuantizer(**options),
        kernel_constraint="weight_clip",
    )
    conv.build((None, 5, 5, c_in))
    conv(tf.zeros((1, 5, 5, c_in)))  # builds the quantizer's mapping network
    return conv


def _randomize_mapping(quantizer, scale=0.5, seed=1):
    """Non-zero mapping weights, so the mapping differs from sign()."""
    rng = np.random.default_rng(seed)
    for w in quantizer.trainable_weights:
        w.assign(w.numpy() + scale * rng.standard_normal(w.shape).astype(np.float32))


@pytest.mark.parametrize("scale", ["layer", "channel", None])
def test_conv_sees_plus_minus_scale(scale):
    conv = _lns_conv(scale=scale)
    _randomize_mapping(conv.kernel_quantizer)
    latent = conv.kernel.latent_variable.numpy()
    with lq.context.quantized_scope(True):
        seen = tf.convert_to_tensor(conv.kernel).numpy()
    if scale == "layer":
        expected_scale = np.full(latent.shape[-1], np.abs(latent).mean())
    elif scale == "channel":
        expected_scale = np.abs(latent).mean(axis=(0, 1, 2))
    else:
        expected_scale = np.ones(latent.shape[-1])
    np.testing.assert_allclose(np.abs(seen), np.broadcast_to(expected_scale, seen.shape), rtol=1e-6)
    # ... and the convolution computes with exactly that kernel.
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 4)).astype(np.float32)
    padded = np.pad(np.where(x >= 0, 1.0, -1.0), [(0, 0), (1, 1), (1, 1), (0, 0)], constant_values=1.0)
    manual = tf.nn.conv2d(padded.astype(np.float32), seen, 1, "VALID")
    np.testing.assert_allclose(conv(x), manual, rtol=1e-5, atol=1e-5)
    # The mapping decides the signs: they differ from sign(W) somewhere.
    assert np.any(np.sign(seen) != np.where(latent >= 0, 1, -1))


def test_untrained_mapping_reproduces_sign():
    conv = _lns_conv(scale="layer")
    latent = conv.kernel.latent_variable.numpy()
    np.testing.assert_array_equal(np.sign(quantized_kernel(conv)), np.where(latent >= 0, 1, -1))


@pytest.mark.parametrize("mapping", ["conv3", "mlp", "linear"])
def test_straight_through_gradient_reaches_theta_and_w(mapping):
    conv = _lns_conv(mapping=mapping, alpha=0.0)
    _randomize_mapping(conv.kernel_quantizer, scale=0.1)
    x = tf.random.normal((2, 5, 5, 4))
    target = tf.random.normal((2, 5, 5, 6))
    variables = [conv.kernel.latent_variable, *conv.kernel_quantizer.trainable_weights]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(conv(x, training=True) * target)
    grads = tape.gradient(loss, variables)
    for var, grad in zip(variables, grads):
        assert grad is not None and np.any(grad.numpy() != 0), var.name


@pytest.mark.parametrize("mapping", ["conv3", "mlp", "linear"])
def test_coupling_within_filter_only(mapping):
    quantizer = LNSQuantizer(mapping=mapping, scale=None)
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 4, 5)).astype(np.float32) * 0.1
    quantizer.build(kernel.shape)
    _randomize_mapping(quantizer, scale=1.0)
    before = quantizer(kernel, training=False).numpy()
    changed_same_filter = False
    for trial in range(40):
        i, j, c, f = rng.integers(0, 3), rng.integers(0, 3), rng.integers(0, 4), rng.integers(0, 5)
        edited = kernel.copy()
        edited[i, j, c, f] = -edited[i, j, c, f] + rng.choice([-1, 1]) * 0.3
        after = quantizer(edited, training=False).numpy()
        others = np.ones(5, bool)
        others[f] = False
        np.testing.assert_array_equal(after[..., others], before[..., others])
        same = np.ones((3, 3, 4), bool)
        same[i, j, c] = False
        changed_same_filter |= bool(np.any(after[..., f][same] != before[..., f][same]))
    assert changed_same_filter, "no edit of a weight changed another binary weight of its filter"


def _small_lns_model(alpha=1.0):
    return models.get("resnet20_lns", quantizer="dorefa", alpha=alpha, rho_pos=0.01, stages=(4, 8, 8), blocks=1)


def test_model_losses_one_term_per_lns_layer():
    model = _small_lns_model()
    x = tf.random.normal((2, 32, 32, 3))
    model(x, training=True)
    layers = lns_layers(model)
    assert len(layers) == 6 and len(model.losses) == len(layers)
    # Each term is alpha * mean of Eq. 15 over the layer's weights.
    layer = layers[0]
    q = layer.kernel_quantizer
    latent = layer.kernel.latent_variable
    expected = q.alpha * tf.reduce_mean(
        losses.unbiased_mse(q.predict_continuous(latent), lq.math.sign(latent), q.rho_pos, q.rho_neg)
    )
    assert any(np.isclose(float(term), float(expected), rtol=1e-5) for term in model.losses)
    # Inference adds none.
    model(x, training=False)
    assert model.losses == []


def test_alpha_zero_removes_the_auxiliary_loss():
    model = _small_lns_model(alpha=0.0)
    model(tf.random.normal((2, 32, 32, 3)), training=True)
    assert model.losses == []


def test_fit_lowers_the_auxiliary_loss():
    model = _small_lns_model(alpha=1.0)
    x = np.random.default_rng(0).standard_normal((64, 32, 32, 3)).astype(np.float32)
    y = np.arange(64) % 10
    model.compile(tf.keras.optimizers.SGD(0.05), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = lns_state(model)["aux_loss"]
    model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    after = lns_state(model)["aux_loss"]
    assert after < before - 0.01, (before, after)


def _predictions_equal(a, b, x):
    np.testing.assert_allclose(a(x, training=False), b(x, training=False), rtol=1e-5, atol=1e-5)


def test_save_and_load_keras_format(tmp_path):
    model = _small_lns_model()
    for layer in lns_layers(model):
        _randomize_mapping(layer.kernel_quantizer, scale=0.2)
    x = tf.random.normal((4, 32, 32, 3))
    path = str(tmp_path / "lns.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    assert len(lns_layers(loaded)) == len(lns_layers(model))
    _predictions_equal(model, loaded, x)
    config = lns_layers(loaded)[0].kernel_quantizer.get_config()
    assert config["rho_pos"] == 0.01 and config["mapping"] == "conv3"


def test_save_and_load_checkpoint(tmp_path):
    model = _small_lns_model()
    for layer in lns_layers(model):
        _randomize_mapping(layer.kernel_quantizer, scale=0.2)
    prefix = str(tmp_path / "ckpt" / "weights")
    model.save_weights(prefix)
    fresh = _small_lns_model()
    fresh.load_weights(prefix).assert_existing_objects_matched()
    _predictions_equal(model, fresh, tf.random.normal((4, 32, 32, 3)))


def test_quantizer_string_alias_and_config_roundtrip():
    q = lq.quantizers.get("lns")
    assert isinstance(q, LNSQuantizer) and q.precision == 1
    clone = LNSQuantizer.from_config(LNSQuantizer(mapping="mlp", scale="channel", rho_pos=0.1, rho_neg=0.2).get_config())
    assert (clone.mapping, clone.scale, clone.rho_pos, clone.rho_neg) == ("mlp", "channel", 0.1, 0.2)


@pytest.mark.parametrize("options", [dict(rho_pos=0.6, rho_neg=0.5), dict(rho_pos=-0.1), dict(mapping="rnn"), dict(alpha=-1)])
def test_invalid_options_raise(options):
    with pytest.raises(ValueError):
        LNSQuantizer(**options)


@pytest.mark.parametrize("quantizer,scale", [("dorefa", "layer"), ("xnor", "channel"), ("binarynet", None)])
def test_lnsify_keeps_scale_kind_and_weights(quantizer, scale):
    base = models.get("resnet20", quantizer=quantizer, stages=(4, 8, 8), blocks=1)
    x = tf.random.normal((4, 32, 32, 3))
    lns = lns_larq.lnsify(base, alpha=0.5)
    mapped = lns_layers(lns)
    assert len(mapped) == 6 and all(layer.kernel_quantizer.scale == scale for layer in mapped)
    # Full-precision layers are left alone, and the untrained mapping is the identity.
    assert type(lns.get_layer("conv1")) is tf.keras.layers.Conv2D
    _predictions_equal(base, lns, x)


def test_lnsify_needs_a_binary_conv():
    with pytest.raises(ValueError, match="no binarized QuantConv2D"):
        lns_larq.lnsify(models.get("resnet20_fp", stages=(4, 8, 8), blocks=1))


def test_mapping_only_freezes_everything_else():
    model = _small_lns_model()
    all_trainable = len(model.trainable_weights)
    mapping_weights = {id(w) for layer in lns_layers(model) for w in layer.kernel_quantizer.trainable_weights}
    with mapping_only(model):
        assert {id(w) for w in model.trainable_weights} == mapping_weights
    assert len(model.trainable_weights) == all_trainable


def test_lnsify_and_warm_start_reproduce_trained_baseline(trained_baseline, cifar):
    """A trained baseline, lnsified and warm-started, predicts as it did."""
    from lns_larq import data

    baseline, _, _ = trained_baseline
    train, _, test = data.pipelines(cifar, batch_size=64, train_subset=2000)
    lns = lns_larq.lnsify(baseline, alpha=1.0, rho_pos=0.005)
    aux_before = lns_state(lns)["aux_loss"]
    with mapping_only(lns):
        lns.compile(tf.keras.optimizers.SGD(0.01, momentum=0.9),
                    tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        lns.fit(train.take(10), epochs=1, verbose=0)
    assert lns_state(lns)["aux_loss"] < aux_before
    assert any(np.any(w.numpy() != 0) for layer in lns_layers(lns) for w in layer.kernel_quantizer.trainable_weights)
    images, _ = next(iter(test.unbatch().batch(500)))
    agree = np.mean(np.argmax(baseline.predict(images, verbose=0), 1) == np.argmax(lns.predict(images, verbose=0), 1))
    assert agree >= 0.99, agree
    assert lns_state(lns)["agreement"] >= 0.99
