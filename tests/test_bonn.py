"""BONN (Gu et al., ICCV 2019): the Bayesian losses, their training, saving and export."""

import collections

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from lns_larq import bonn, data, models
from lns_larq.models.resnet import binary_conv_kwargs

MIN_VAR = bonn.MIN_VARIANCE


def _ce():
    return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _softplus(v):
    return np.log1p(np.exp(np.float64(v)))


def _variance(raw):
    return MIN_VAR + np.exp(np.float64(raw))


def np_kernel_loss(x, scale, mu_pos, mu_neg, var_pos, var_neg, nu):
    """The paper's bracket, per weight, written out directly."""
    x = np.asarray(x, np.float64).ravel()
    pos = x >= 0  # larq: sign(0) = +1
    reconstruction = np.sum((np.where(pos, 1.0, -1.0) - scale * x) ** 2)
    prior = (
        np.sum((x[pos] - mu_pos) ** 2) / var_pos
        + np.sum((x[~pos] + mu_neg) ** 2) / var_neg
        + pos.sum() * np.log(var_pos)
        + (~pos).sum() * np.log(var_neg)
    )
    return (reconstruction + nu * prior) / x.size


def np_kernel_grad(x, scale, mu_pos, mu_neg, var_pos, var_neg, nu):
    """d/dx of np_kernel_loss with sign(x) held constant (the paper's backward pass)."""
    x = np.asarray(x, np.float64)
    pos = x >= 0
    target = np.where(pos, 1.0, -1.0)
    prior = np.where(pos, (x - mu_pos) / var_pos, (x + mu_neg) / var_neg)
    return (-2 * scale * (target - scale * x) + 2 * nu * prior) / x.size


def np_feature_loss(f, y, centres, variances):
    f = np.asarray(f, np.float64)
    d2 = (f - centres[y]) ** 2
    return np.mean(d2 + d2 / variances[y] + np.log(variances[y]))


def _prior_values(prior):
    """The prior's parameters computed in NumPy from its raw variables."""
    return dict(
        scale=_softplus(prior.scale_raw.numpy()),
        mu_pos=_softplus(prior.mu_pos_raw.numpy()),
        mu_neg=_softplus(prior.mu_neg_raw.numpy()),
        var_pos=_variance(prior.log_var_pos.numpy()),
        var_neg=_variance(prior.log_var_neg.numpy()),
    )


def _randomize_prior(prior, rng):
    prior.scale_raw.assign(rng.uniform(1.0, 3.0))
    prior.mu_pos_raw.assign(rng.uniform(-3.0, -1.0))
    prior.mu_neg_raw.assign(rng.uniform(-3.0, -1.0))
    prior.log_var_pos.assign(rng.uniform(-4.0, -1.0))
    prior.log_var_neg.assign(rng.uniform(-4.0, -1.0))


def _tiny(quantizer="dorefa"):
    """Stem, two binarized 16-channel convs with shortcuts, pooling, Dense logits."""
    kwargs = binary_conv_kwargs(quantizer)
    inputs = tf.keras.Input((32, 32, 3))
    x = tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
    x = tf.keras.layers.BatchNormalization(name="stem_bn")(x)
    for i in (1, 2):
        y = lq.layers.QuantConv2D(16, 3, name=f"bconv{i}", **kwargs)(x)
        y = tf.keras.layers.BatchNormalization(name=f"bconv{i}_bn")(y)
        x = tf.keras.layers.Add(name=f"add{i}")([x, y])
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = tf.keras.layers.Dense(10, name="logits")(x)
    return tf.keras.Model(inputs, outputs, name="tiny")


def _batch(n=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 32, 32, 3)).astype(np.float32)
    return x, np.arange(n) % 10


def _log_softmax_ce(logits, y):
    logits = np.asarray(logits, np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -np.mean(log_p[np.arange(len(y)), y])


# ----------------------------------------------------------------- the losses


def test_kernel_loss_matches_numpy_and_is_the_layers_regularizer():
    prior = bonn.BayesianKernelLoss(bonn_lambda=0.7, bonn_nu=0.3)
    conv = lq.layers.QuantConv2D(
        6, 3, kernel_regularizer=prior, **binary_conv_kwargs("dorefa")
    )
    conv.build((None, 5, 5, 4))
    rng = np.random.default_rng(1)
    x = (0.3 * rng.standard_normal(conv.kernel.shape)).astype(np.float32)
    x.flat[:5] = 0.0  # sign(0) = +1: zeros belong to the positive mode
    conv.kernel.latent_variable.assign(x)
    _randomize_prior(prior, rng)
    p = _prior_values(prior)
    expected = np_kernel_loss(x, nu=0.3, **p)

    np.testing.assert_allclose(prior.kernel_loss(conv.kernel), expected, rtol=1e-5)
    # Registered through Keras: the layer's only loss is lambda/2 times it.
    assert len(conv.losses) == 1
    np.testing.assert_allclose(conv.losses[0], 0.5 * 0.7 * expected, rtol=1e-5)
    # The positive parameterisation: what the layer uses is softplus / floor + exp.
    np.testing.assert_allclose(prior.scale, p["scale"], rtol=1e-6)
    np.testing.assert_allclose(prior.var_neg, p["var_neg"], rtol=1e-6)
    # The gradient on the latent weights treats sign(x) as a constant target.
    latent = conv.kernel.latent_variable
    with tf.GradientTape() as tape:
        loss = prior.kernel_loss(conv.kernel)
    np.testing.assert_allclose(
        tape.gradient(loss, latent), np_kernel_grad(x, nu=0.3, **p), rtol=1e-4, atol=1e-6
    )


def test_initialize_sets_the_maximum_likelihood_prior():
    prior = bonn.BayesianKernelLoss()
    rng = np.random.default_rng(2)
    x = rng.uniform(-0.2, 0.2, (3, 3, 8, 8)).astype(np.float32)
    prior.initialize(x)
    pos, mag = x >= 0, np.abs(x.astype(np.float64))
    np.testing.assert_allclose(prior.scale, mag.sum() / np.square(mag).sum(), rtol=1e-5)
    np.testing.assert_allclose(prior.mu_pos, mag[pos].mean(), rtol=1e-5)
    np.testing.assert_allclose(prior.mu_neg, mag[~pos].mean(), rtol=1e-5)
    np.testing.assert_allclose(prior.var_pos, mag[pos].var(), rtol=1e-4)
    np.testing.assert_allclose(prior.var_neg, mag[~pos].var(), rtol=1e-4)
    # ... the stationary point of the loss in the prior's parameters.
    with tf.GradientTape() as tape:
        loss = prior.kernel_loss(tf.constant(x))
    for g in tape.gradient(loss, prior.trainable_weights):
        assert abs(float(g)) < 1e-3


def test_feature_and_kernel_losses_enter_the_objective_as_stated():
    model = bonn.bonnify(_tiny(), bonn_lambda=0.4, bonn_theta=0.6, bonn_nu=0.8)
    rng = np.random.default_rng(3)
    for _, prior in bonn.kernel_priors(model):
        _randomize_prior(prior, rng)
    centres = rng.standard_normal(model.feature_centres.shape)
    log_vars = rng.uniform(-2.0, 1.0, model.feature_log_variances.shape)
    model.feature_centres.assign(centres)
    model.feature_log_variances.assign(log_vars)
    x, y = _batch()

    features = model.features(x).numpy()
    variances = _variance(log_vars)
    feature = np_feature_loss(features, y, centres, variances)
    np.testing.assert_allclose(
        bonn.bayesian_feature_loss(features, y, centres, variances), feature, rtol=1e-5
    )
    np.testing.assert_allclose(model.feature_loss(features, y), feature, rtol=1e-5)
    kernel = sum(
        np_kernel_loss(layer.kernel.latent_variable.numpy(), nu=0.8, **_prior_values(prior))
        for layer, prior in bonn.kernel_priors(model)
    )
    assert len(bonn.kernel_priors(model)) == 2

    model.compile("sgd", _ce())
    results = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    ce = _log_softmax_ce(model.predict(x, verbose=0), y)
    np.testing.assert_allclose(results["loss"], ce + 0.5 * 0.4 * kernel + 0.5 * 0.6 * feature, rtol=1e-4)
    np.testing.assert_allclose(results["bonn_kernel_loss"], kernel, rtol=1e-4)
    np.testing.assert_allclose(results["bonn_feature_loss"], feature, rtol=1e-4)


def test_gradients_reach_weights_prior_centres_and_variances():
    model = bonn.bonnify(_tiny(), bonn_lambda=0.5, bonn_theta=0.5)
    x, y = _batch(n=10)  # one image of every class
    priors = bonn.kernel_priors(model)
    rng = np.random.default_rng(4)
    for _, prior in priors:  # away from the maximum-likelihood start, where d/dprior = 0
        _randomize_prior(prior, rng)
    with tf.GradientTape(persistent=True) as tape:
        features = model.features(x, training=True)
        feature_loss = model.feature_loss(features, y)
        kernel_loss = model.kernel_loss()
    for layer, prior in priors:
        targets = [layer.kernel.latent_variable, *prior.trainable_weights]
        assert len(targets) == 6  # x, w, mu+, mu-, psi+, psi-
        for target, g in zip(targets, tape.gradient(kernel_loss, targets)):
            assert g is not None and np.any(g.numpy() != 0), target.name
    for target in (features, model.feature_centres, model.feature_log_variances):
        g = tape.gradient(feature_loss, target)
        assert g is not None, target.name
        assert np.all(np.any(tf.convert_to_tensor(g).numpy() != 0, axis=-1)), target.name

    # train_step applies them: every BONN parameter moves in one step.
    model.compile(tf.keras.optimizers.SGD(0.1), _ce())
    bonn_vars = [v for v in model.trainable_variables if bonn.PARAMETER_PREFIX in v.name]
    assert len(bonn_vars) == 2 * 5 + 2
    before = [v.numpy().copy() for v in bonn_vars]
    model.train_on_batch(x, y)
    for v, old in zip(bonn_vars, before):
        assert not np.allclose(v.numpy(), old), v.name


def test_weight_decay_spares_the_bonn_parameters():
    model = bonn.bonnify(_tiny())
    model.compile(tf.keras.optimizers.SGD(0.1, weight_decay=0.5), _ce())
    variables = model.trainable_variables
    before = [v.numpy().copy() for v in variables]
    model.optimizer.apply_gradients([(tf.zeros_like(v), v) for v in variables])  # decay only
    checked = collections.Counter()
    for v, old in zip(variables, before):
        decayed = not np.allclose(v.numpy(), old)
        if bonn.PARAMETER_PREFIX in v.name:
            assert not decayed, v.name
            checked["bonn"] += 1
        elif old.any():
            assert decayed, v.name
            checked["network"] += 1
    assert checked["bonn"] == 12 and checked["network"] >= 5, checked


@pytest.mark.parametrize("quantizer", ["dorefa", "xnor", "binarynet"])
def test_bonnify_keeps_the_network_and_its_forward_pass(quantizer):
    base = _tiny(quantizer)
    model = bonn.bonnify(base)
    assert isinstance(model, bonn.BONNModel) and model.name == "tiny_bonn"
    for old, new in zip(base.layers, model.layers):
        assert type(old) is type(new) and old.name == new.name
        if isinstance(old, lq.layers.QuantConv2D):
            assert type(old.kernel_quantizer) is type(new.kernel_quantizer)
            assert isinstance(new.kernel_regularizer, bonn.BayesianKernelLoss)
    x, _ = _batch(n=4)
    np.testing.assert_array_equal(model.predict(x, verbose=0), base.predict(x, verbose=0))


def test_bonnify_rejects_models_it_cannot_handle():
    fp = models.get("resnet20_fp")
    with pytest.raises(ValueError, match="no binarized QuantConv2D"):
        bonn.bonnify(fp)
    with pytest.raises(ValueError, match="bonn_lambda"):
        bonn.bonnify(_tiny(), bonn_lambda=-1.0)


# ------------------------------------------------------------- short training


def _near_modes(model):
    """Fraction of latent weights within 25 % of their mode's learned magnitude."""
    near = []
    for layer, prior in bonn.kernel_priors(model):
        x = layer.kernel.latent_variable.numpy().ravel()
        mu = np.where(x >= 0, float(prior.mu_pos), float(prior.mu_neg))
        near.append(np.abs(np.abs(x) - mu) < 0.25 * mu)
    return float(np.mean(np.concatenate(near)))


def _spread(model):
    """std(|x|) / mean(|x|): 0 when every weight sits at +/- one magnitude."""
    x = np.concatenate(
        [np.abs(layer.kernel.latent_variable.numpy().ravel()) for layer, _ in bonn.kernel_priors(model)]
    )
    return float(x.std() / x.mean())


def _state(model, probe):
    x, y = probe
    return dict(
        kernel=float(model.kernel_loss()),
        feature=float(model.feature_loss(model.features(x), y)),
        near=_near_modes(model),
        spread=_spread(model),
    )


@pytest.fixture(scope="module")
def short_runs(cifar):
    """The tiny network trained 3 epochs on 512 real CIFAR-10 images, with BONN
    (lambda=0.5, theta=1) and, from the same start, with negligible weights (the
    control: same code path, the Bayesian losses do not act)."""
    train, _, _ = data.pipelines(cifar, batch_size=64, train_subset=512, augment=False)
    probe = next(iter(train))
    tf.keras.utils.set_random_seed(0)
    base = _tiny()
    runs = {}
    for name, weight in (("bonn", None), ("control", 1e-9)):
        options = dict(bonn_lambda=0.5, bonn_theta=1.0) if weight is None else dict(
            bonn_lambda=weight, bonn_theta=weight
        )
        model = bonn.bonnify(base, **options)
        model.compile(tf.keras.optimizers.SGD(0.05, momentum=0.9), _ce(), metrics=["accuracy"])
        before = _state(model, probe)
        history = model.fit(train, epochs=3, verbose=0).history
        runs[name] = dict(model=model, before=before, after=_state(model, probe), history=history)
    return runs


def test_fit_lowers_the_bayesian_losses(short_runs):
    run, control = short_runs["bonn"], short_runs["control"]
    assert run["before"] == pytest.approx(control["before"])  # same start
    drop = run["before"]["kernel"] - run["after"]["kernel"]
    control_drop = control["before"]["kernel"] - control["after"]["kernel"]
    assert drop > 0.3 and drop > control_drop + 0.3, (drop, control_drop)
    assert run["after"]["feature"] < 0.95 * run["before"]["feature"], run
    assert run["after"]["feature"] < 0.5 * control["after"]["feature"], (run, control)
    logged = run["history"]["bonn_kernel_loss"]
    assert logged[-1] < logged[0] and run["history"]["bonn_feature_loss"][-1] < run["history"]["bonn_feature_loss"][0]
    assert np.all(np.isfinite(run["history"]["loss"]))


def test_latent_weights_move_towards_two_modes(short_runs):
    run, control = short_runs["bonn"], short_runs["control"]
    assert run["after"]["near"] > run["before"]["near"] + 0.15, run
    assert run["after"]["near"] > control["after"]["near"] + 0.15, (run, control)
    assert run["after"]["spread"] < 0.8 * run["before"]["spread"], run
    assert control["after"]["spread"] > 0.9 * control["before"]["spread"], control


def test_save_and_load_keep_the_bonn_state(short_runs, tmp_path):
    model = short_runs["bonn"]["model"]
    path = str(tmp_path / "bonn.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    assert isinstance(loaded, bonn.BONNModel)
    assert loaded.bonn_theta == model.bonn_theta and loaded.classifier == "logits"
    assert len(loaded.weights) == len(model.weights)
    for saved, restored in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy(), err_msg=saved.name)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations.numpy() == model.optimizer.iterations.numpy() > 0
    (_, prior), (_, restored_prior) = bonn.kernel_priors(model)[0], bonn.kernel_priors(loaded)[0]
    assert restored_prior.get_config() == {**prior.get_config(), "name": restored_prior.name}
    x, y = _batch(n=8)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    expected = model.evaluate(x, y, verbose=0, return_dict=True)
    restored = loaded.evaluate(x, y, verbose=0, return_dict=True)
    for key in ("loss", "bonn_kernel_loss", "bonn_feature_loss"):
        np.testing.assert_allclose(restored[key], expected[key], rtol=1e-6, err_msg=key)
    loaded.train_on_batch(x, y)  # compiled and trainable after loading


# --------------------------------------------------------- registry and export


def _op_counts(flatbuffer):
    try:
        from lns_larq.export import op_counts
    except ImportError:
        op_counts = None
    if op_counts is not None:
        return op_counts(flatbuffer)
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
    counts = collections.Counter()
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            counts[code.customCode.decode() if code.customCode else names[builtin]] += 1
    return dict(counts)


def test_resnet20_bonn_from_registry_exports_every_binary_conv_to_lce():
    import larq_compute_engine as lce

    assert "resnet20_bonn" in models.available()
    model = models.get("resnet20_bonn", quantizer="dorefa", bonn_lambda=0.3, bonn_theta=0.2, bonn_nu=0.5)
    assert isinstance(model, bonn.BONNModel) and model.bonn_theta == 0.2
    priors = bonn.kernel_priors(model)
    assert len(priors) == 18
    assert all(p.bonn_lambda == 0.3 and p.bonn_nu == 0.5 for _, p in priors)
    # Mark the training-only parameters, then check none of them is in the export.
    marker = np.float32(123.456)
    model.feature_centres.assign(np.full(model.feature_centres.shape, marker))
    for _, prior in priors:
        prior.scale_raw.assign(marker)

    flatbuffer = lce.convert_keras_model(model)
    counts = _op_counts(flatbuffer)
    assert counts.get("LceBconv2d") == 18, counts
    assert counts.get("LceQuantize") == 18, counts
    assert counts.get("CONV_2D") == 3, counts  # stem and the two downsampling shortcuts
    assert counts.get("FULLY_CONNECTED") == 1, counts
    assert marker.tobytes() not in flatbuffer
