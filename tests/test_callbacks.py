"""FlipRate and LNSMonitor report the right numbers, FlipRate resumes against the
true start, and the hardtanh bound and the noisy-objective warm start do what
their documentation says (issue 12, item 5)."""

import os
import zlib

import lns_larq  # noqa: F401  # isort: skip  (Keras 2 before TensorFlow)
import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from lns_larq import lns
from lns_larq.callbacks import FlipRate, binary_signs
from lns_larq.lns import LNSMonitor
from lns_larq.quantizers import LNSQuantizer


def binary_model(kernel_quantizer="ste_sign"):
    x = tf.keras.Input((6, 6, 3))
    h = lq.layers.QuantConv2D(8, 3, padding="same", pad_values=1.0, use_bias=False, name="bconv",
                              input_quantizer="ste_sign", kernel_quantizer=kernel_quantizer,
                              kernel_constraint="weight_clip")(x)
    outputs = tf.keras.layers.Dense(5, name="logits")(tf.keras.layers.Flatten()(h))
    return tf.keras.Model(x, outputs)


def flip(model, count, seed):
    """Negate `count` distinct latent weights of the binary conv; returns their indices."""
    kernel = model.get_layer("bconv").kernel.latent_variable
    values = kernel.numpy().ravel()
    idx = np.random.default_rng(seed).choice(values.size, count, replace=False)
    values[idx] = -values[idx]
    kernel.assign(values.reshape(kernel.shape))
    return idx


def test_flip_rate_counts_flips_per_epoch_and_since_the_start(tmp_path):
    model = binary_model()
    size = model.get_layer("bconv").kernel.shape.num_elements()  # 3*3*3*8 = 216
    callback = FlipRate(layer_log_dir=str(tmp_path))
    callback.set_model(model)
    callback.on_train_begin()

    first = flip(model, 12, seed=0)
    logs = {}
    callback.on_epoch_end(0, logs)
    assert logs["flip_rate"] == pytest.approx(12 / size) and logs["flip_rate_total"] == pytest.approx(12 / size)
    assert callback.layer_figures == {"flip_rate": {"bconv": pytest.approx(12 / size)}}

    # Undo 5 of the first flips: 5 changes in this epoch, 7 left against the start.
    kernel = model.get_layer("bconv").kernel.latent_variable
    values = kernel.numpy().ravel()
    values[first[:5]] = -values[first[:5]]
    kernel.assign(values.reshape(kernel.shape))
    logs = {}
    callback.on_epoch_end(1, logs)
    assert logs["flip_rate"] == pytest.approx(5 / size) and logs["flip_rate_total"] == pytest.approx(7 / size)
    rows = (tmp_path / "layers.csv").read_text().splitlines()
    assert rows[0] == "epoch,figure,layer,value" and len(rows) == 3 and rows[2].startswith("1,flip_rate,bconv,")


def test_flip_rate_resumes_against_the_saved_start(tmp_path):
    """A resumed run (a new callback, the same reference_path) measures
    `flip_rate_total` against the weights of the first start, not of the resume."""
    reference = str(tmp_path / "start.npz")
    model = binary_model()
    first = FlipRate(reference_path=reference)
    first.set_model(model)
    first.on_train_begin()
    flip(model, 10, seed=1)
    first.on_epoch_end(0, {})

    resumed = FlipRate(reference_path=reference)  # the process restarted
    resumed.set_model(model)
    resumed.on_train_begin()
    logs = {}
    resumed.on_epoch_end(1, logs)
    size = model.get_layer("bconv").kernel.shape.num_elements()
    assert logs["flip_rate"] == 0.0  # nothing changed since the resume
    assert logs["flip_rate_total"] == pytest.approx(10 / size)  # the first start is remembered
    # Without the reference file, the resume would have counted from scratch.
    fresh = FlipRate()
    fresh.set_model(model)
    fresh.on_train_begin()
    logs = {}
    fresh.on_epoch_end(1, logs)
    assert logs["flip_rate_total"] == 0.0


def test_flip_rate_of_a_resumed_epoch_counts_from_the_restored_weights(tmp_path):
    """In `fit` with BackupAndRestore after FlipRate (as training.run orders them),
    the first epoch after a resume counts the flips since the restored weights,
    not since the weights the model had before the restore."""

    class Interrupt(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    x = np.random.default_rng(0).standard_normal((64, 6, 6, 3)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(64) % 5)).batch(16)
    reference, backup = str(tmp_path / "start.npz"), str(tmp_path / "backup")

    def fit(callbacks):
        tf.keras.utils.set_random_seed(0)  # the same initial weights in both processes
        model = binary_model()
        model.compile(tf.keras.optimizers.SGD(1.0),
                      tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        flips = FlipRate(reference_path=reference)
        history = tf.keras.callbacks.History()
        try:
            model.fit(data, epochs=2, verbose=0, callbacks=[
                flips, tf.keras.callbacks.BackupAndRestore(backup), *callbacks, history])
        except KeyboardInterrupt:
            pass
        return model, flips, history

    _, first, _ = fit([Interrupt()])  # killed after epoch 1, its checkpoint saved
    after_epoch_1 = first._previous
    start = first._start
    model, _, history = fit([])  # resumed: epoch 2 only
    assert history.epoch == [1]
    now = binary_signs(model)
    since_restore = np.mean(now["bconv"] != after_epoch_1["bconv"])
    since_start = np.mean(now["bconv"] != start["bconv"])
    assert abs(since_start - since_restore) > 0.02  # the two readings differ here
    assert history.history["flip_rate"][0] == pytest.approx(since_restore)
    assert history.history["flip_rate_total"][0] == pytest.approx(since_start)


@pytest.mark.parametrize("alpha", [0.0, 2.0])
def test_lns_monitor_reports_agreement_aux_loss_and_gradient_ratio(alpha):
    model = lns.lnsify(binary_model("dorefa_sign"), alpha=alpha, width=0.5)
    layer = model.get_layer("bconv")
    quantizer = layer.kernel_quantizer
    kernel = tf.convert_to_tensor(layer.kernel.latent_variable)
    x = tf.random.stateless_normal((4, 6, 6, 3), seed=(1, 2))
    y = tf.constant([0, 1, 2, 3])
    monitor = LNSMonitor(sample=(x, y))
    monitor.set_model(model)
    logs = {}
    monitor.on_epoch_end(0, logs)

    # The random mapping disagrees with sign(W) on about half of the weights.
    disagreement = float(np.mean(np.sign(quantizer.predict_continuous(kernel).numpy()) != np.sign(kernel.numpy())))
    assert 0.2 < disagreement < 0.8
    assert logs["agreement"] == pytest.approx(1.0 - disagreement)
    assert monitor.layer_figures["disagreement"]["bconv"] == pytest.approx(disagreement)
    assert logs["aux_loss"] == pytest.approx(float(quantizer.auxiliary_loss(kernel)), rel=1e-6)
    assert (logs["aux_loss"] > 0) == (alpha > 0)

    # The gradient ratio, computed here by hand.
    theta = quantizer.network.trainable_weights
    with tf.GradientTape(persistent=True) as tape:
        ce = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, model(x, training=False),
                                                                            from_logits=True))
        aux = quantizer.auxiliary_loss(tf.convert_to_tensor(layer.kernel.latent_variable))
    expected = float(tf.linalg.global_norm(tape.gradient(aux, theta)) / tf.linalg.global_norm(tape.gradient(ce, theta)))
    ratio = monitor.layer_figures["grad_ratio"]["bconv"]
    assert ratio == pytest.approx(expected, rel=1e-4)
    assert (ratio > 0.01) == (alpha > 0)


def test_hardtanh_bound_clips_and_cuts_the_gradient_outside_one():
    """`bound="hardtanh"`: q = clip(z, -1, 1), derivative 1 inside and 0 outside."""
    quantizer = LNSQuantizer(bound="hardtanh", width=1.0)
    kernel = tf.random.stateless_normal((3, 3, 4, 16), seed=(3, 4))
    quantizer.build(kernel.shape)
    z = quantizer.preactivation(kernel)
    scale = 2.5 / float(tf.reduce_max(tf.abs(z)))  # spread z over [-2.5, 2.5]: both regions populated
    z = z * scale
    inside = np.abs(z.numpy()) <= 1
    assert 0.05 < inside.mean() < 0.95
    with tf.GradientTape() as tape:
        tape.watch(z)
        q = lns_larq.quantizers._bound("hardtanh", z)
    grad = tape.gradient(q, z).numpy()
    np.testing.assert_array_equal(grad, inside.astype(np.float32))
    np.testing.assert_allclose(q.numpy(), np.clip(z.numpy(), -1, 1))
    state = quantizer.state(kernel)
    z0 = quantizer.preactivation(kernel).numpy()
    assert state["bound_derivative"] == pytest.approx(float(np.mean(np.abs(z0) <= 1)))
    assert state["saturated"] == pytest.approx(float(np.mean(np.abs(np.clip(z0, -1, 1)) > 0.99)))
    np.testing.assert_allclose(quantizer.predict_continuous(kernel).numpy(), np.clip(z0, -1, 1))


def test_warm_start_on_the_noisy_objective_trains_only_the_mappings():
    """`warmup_objective="noisy"` (cross_entropy=False): the mappings move towards
    sign(W); the network's own weights, batch norm statistics included, do not."""
    base = tf.keras.Sequential([
        tf.keras.Input((6, 6, 3)),
        lq.layers.QuantConv2D(8, 3, padding="same", pad_values=1.0, use_bias=False, name="bconv",
                              input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                              kernel_constraint="weight_clip"),
        tf.keras.layers.BatchNormalization(name="bn"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(5, name="logits"),
    ])
    model = lns.lnsify(base, width=1.0)
    mapping = lns.lns_layers(model)[0].kernel_quantizer.network
    own = [w for w in model.weights if not any(w is m for m in mapping.weights)]
    before_own = [w.numpy().copy() for w in own]
    before_mapping = [w.numpy().copy() for w in mapping.weights]
    start = lns.agreement(model)
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices(
        (rng.standard_normal((64, 6, 6, 3)).astype(np.float32), rng.integers(0, 5, 64))).batch(16)
    lns.warm_start(model, data, epochs=10, optimizer=tf.keras.optimizers.Adam(1e-2), verbose=0)
    for w, b in zip(own, before_own):
        np.testing.assert_array_equal(w.numpy(), b, err_msg=w.name)
    assert all(np.any(w.numpy() != b) for w, b in zip(mapping.weights, before_mapping))
    assert lns.agreement(model) > start + 0.3  # measured: 0.46 -> 0.89 in 40 steps


def _interrupted_then_resumed(tmp_path, optimizer, between=None):
    """Fit a small binary model one epoch with BackupAndRestore, interrupt it, run
    `between(backup folder)`, then resume it with a learning rate of 0. Returns the
    weights and optimizer variables at the interruption and after the resumed run's
    first step (at lr 0, a momentum m becomes 0.9 m and no weight moves)."""

    class Interrupt(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    class AfterFirstStep(tf.keras.callbacks.Callback):
        def on_train_begin(self, logs=None):  # after BackupAndRestore's restore
            self.model.optimizer.learning_rate.assign(0.0)

        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                self.state = ([w.numpy() for w in self.model.weights],
                              [v.numpy() for v in self.model.optimizer.variables])

    x = np.random.default_rng(0).standard_normal((64, 6, 6, 3)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(64) % 5)).batch(16)
    backup = str(tmp_path / "backup")

    def fit(callback):
        tf.keras.utils.set_random_seed(0)
        model = binary_model()
        model.compile(optimizer(), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        try:
            model.fit(data, epochs=2, verbose=0,
                      callbacks=[tf.keras.callbacks.BackupAndRestore(backup), callback])
        except KeyboardInterrupt:
            pass
        return model

    model = fit(Interrupt())
    at_interrupt = ([w.numpy() for w in model.weights], [v.numpy() for v in model.optimizer.variables])
    zeroed = between(backup) if between else None
    resumed = AfterFirstStep()
    fit(resumed)
    return at_interrupt, resumed.state, zeroed


def test_zero_momentum_keeps_the_weights_and_resumes_without_the_momentum(tmp_path):
    from lns_larq.callbacks import zero_momentum

    sgd = lambda: tf.keras.optimizers.SGD(0.5, momentum=0.9)  # noqa: E731
    (weights, optimizer), (weights_after, optimizer_after), zeroed = _interrupted_then_resumed(
        tmp_path / "zeroed", sgd, zero_momentum)
    momentums = [v for v in optimizer if v.ndim > 0]  # iterations and learning rate are scalars
    assert zeroed == len(momentums) == 3  # the conv's kernel, the dense layer's kernel and bias
    assert all(np.abs(m).max() > 0 for m in momentums)  # there was momentum to lose
    for before, after in zip(weights, weights_after):
        np.testing.assert_array_equal(before, after)  # restored exactly; lr 0 moved nothing
    assert all(not np.any(v) for v in optimizer_after if v.ndim > 0)
    assert [v for v in optimizer_after if v.ndim == 0][0] == optimizer[0] + 1  # iterations went on

    # The same without zero_momentum: the resumed run keeps its momentum (0.9 m after
    # a step at lr 0), so the check above does see what zero_momentum changes.
    (_, optimizer), (_, optimizer_after), _ = _interrupted_then_resumed(tmp_path / "kept", sgd)
    for before, after in zip([v for v in optimizer if v.ndim > 0], [v for v in optimizer_after if v.ndim > 0]):
        np.testing.assert_allclose(after, 0.9 * before, rtol=1e-6)


def test_zero_momentum_leaves_adam_alone(tmp_path):
    """Adam's moments stay: its bias correction would make a zeroed second moment
    take outsized steps. The checkpoint's files are left byte for byte."""
    from lns_larq.callbacks import zero_momentum

    files = {}

    def zero_and_compare(backup):
        paths = [os.path.join(d, f) for d, _, fs in os.walk(backup) for f in fs]
        files.update({p: open(p, "rb").read() for p in paths})
        zeroed = zero_momentum(backup)
        assert all(open(p, "rb").read() == data for p, data in files.items())
        return zeroed

    (_, optimizer), _, zeroed = _interrupted_then_resumed(
        tmp_path, lambda: tf.keras.optimizers.Adam(0.01), zero_and_compare)
    assert zeroed == 0
    assert any(name.endswith(".index") for name in files)  # there was a checkpoint to leave alone
    assert len([v for v in optimizer if v.ndim > 0]) == 6  # Adam's two moments per weight


@pytest.mark.parametrize("bits,packs_to", [(10, 0.75), (7, 0.6)])
def test_round_mantissa_keeps_sign_and_the_precision_asked_for(bits, packs_to):
    from lns_larq.callbacks import round_mantissa

    x = np.random.default_rng(0).normal(0, 0.05, 100_000).astype(np.float32)
    x[:4] = [0.0, -0.0, 1.0, -1e-30]
    r = round_mantissa(x, bits)
    assert not np.any(r.view(np.uint32) & ((1 << (23 - bits)) - 1))  # the dropped mantissa bits are zero
    np.testing.assert_array_equal(np.signbit(r), np.signbit(x))
    assert r[0] == 0 and r[2] == 1.0 and r[3] != 0  # zero stays zero; a tiny value keeps float32's exponent
    assert np.max(np.abs(r - x) / np.maximum(np.abs(x), 1e-38)) <= 2.0 ** -(bits + 1)
    assert np.mean(r != x) > 0.99  # it did round
    # To nearest: no bias beyond sampling noise (truncation would shrink values by 2 ** -(bits + 2) on average).
    assert abs(np.mean((r - x) / np.where(x == 0, 1, x))) < 2.0 ** -(bits + 6)
    # What it is for: zlib (git's object store) packs the rounded weights smaller.
    assert len(zlib.compress(r.tobytes())) < packs_to * len(zlib.compress(x.tobytes()))


def test_round_mantissa_to_23_bits_is_the_identity():
    from lns_larq.callbacks import round_mantissa

    x = np.random.default_rng(1).normal(size=1000).astype(np.float32)
    np.testing.assert_array_equal(round_mantissa(x, 23), x)
    with pytest.raises(ValueError, match="bits"):
        round_mantissa(x, 24)


def test_round_checkpoint_resumes_from_the_rounded_weights(tmp_path):
    """As campaigns/commit_checkpoints.sh leaves a checkpoint: momentum zeroed (so that
    a step at lr 0 moves nothing), then every float tensor rounded."""
    from lns_larq.callbacks import round_checkpoint, round_mantissa, zero_momentum

    sgd = lambda: tf.keras.optimizers.SGD(0.5, momentum=0.9)  # noqa: E731
    (weights, optimizer), (weights_after, optimizer_after), counts = _interrupted_then_resumed(
        tmp_path, sgd, lambda backup: (zero_momentum(backup), round_checkpoint(backup)))
    # The conv's kernel, the dense layer's kernel and bias, their three momentums, the learning rate.
    assert counts == (3, 7)
    for before, after in zip(weights, weights_after):  # lr 0, no momentum: the restored weights, unmoved
        np.testing.assert_array_equal(after, round_mantissa(before))
        np.testing.assert_array_equal(np.sign(after), np.sign(before))  # the binary weights are kept
    assert any(np.any(round_mantissa(w) != w) for w in weights)  # there was something to round
    assert all(not np.any(v) for v in optimizer_after if v.ndim > 0)  # zeros stay zeros
    assert [v for v in optimizer_after if v.ndim == 0][0] == optimizer[0] + 1  # the step count, an integer, kept
