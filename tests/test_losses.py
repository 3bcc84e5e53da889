import numpy as np
import pytest
import tensorflow as tf

from lns_larq.losses import unbiased_mse


def _sample_noisy(q, rho_pos, rho_neg, n, rng):
    """n noisy copies of clean labels q under Eqs. 8-9."""
    flip_prob = np.where(q > 0, rho_pos, rho_neg)
    flips = rng.random((n, q.size)) < flip_prob
    return np.where(flips, -q, q).astype(np.float32)


@pytest.mark.parametrize("rho_pos,rho_neg", [(0.1, 0.1), (0.3, 0.05), (0.02, 0.4)])
def test_unbiased_in_expectation(rho_pos, rho_neg):
    """Eq. 10: E over noisy labels of the corrected loss equals the clean loss."""
    rng = np.random.default_rng(0)
    q = np.array([1, 1, -1, -1, 1, -1], np.float32)
    q_hat = np.array([0.9, -0.4, -0.7, 0.2, 0.0, -1.3], np.float32)
    n = 200_000
    noisy = _sample_noisy(q, rho_pos, rho_neg, n, rng)
    losses = unbiased_mse(np.broadcast_to(q_hat, noisy.shape), noisy, rho_pos, rho_neg).numpy()
    losses = losses.astype(np.float64)
    mean = losses.mean(axis=0)
    stderr = losses.std(axis=0) / np.sqrt(n)
    clean = (q_hat - q) ** 2
    np.testing.assert_array_less(np.abs(mean - clean), 5 * stderr + 1e-6)
    # The uncorrected loss is biased for the same samples: the test can tell.
    plain = ((q_hat - noisy) ** 2).mean(axis=0)
    assert np.max(np.abs(plain - clean)) > 10 * np.max(stderr)


def test_zero_noise_is_plain_mse():
    q_hat = tf.constant([0.3, -0.8, 1.2])
    labels = tf.constant([1.0, -1.0, -1.0])
    np.testing.assert_allclose(unbiased_mse(q_hat, labels, 0.0, 0.0), (q_hat - labels) ** 2, rtol=1e-6)


def _grad(q_hat, labels, rho_pos, rho_neg):
    q_hat = tf.Variable(q_hat)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(unbiased_mse(q_hat, labels, rho_pos, rho_neg))
    return tape.gradient(loss, q_hat).numpy()


def test_gradient_eq18_symmetric():
    rho = 0.05
    q_hat = np.array([0.5, -0.2, 0.9, -1.1], np.float32)
    labels = np.array([1, 1, -1, -1], np.float32)
    expected = 2 * (q_hat - labels) - 4 * rho * labels / (1 - 2 * rho)
    np.testing.assert_allclose(_grad(q_hat, labels, rho, rho), expected, rtol=1e-5)


def test_gradient_general_asymmetric():
    rho_pos, rho_neg = 0.1, 0.25
    q_hat = np.array([0.5, -0.2, 0.9, -1.1], np.float32)
    labels = np.array([1, 1, -1, -1], np.float32)
    rho_same = np.where(labels > 0, rho_pos, rho_neg)
    rho_other = np.where(labels > 0, rho_neg, rho_pos)
    d = 1 - rho_pos - rho_neg
    general = (2 * (1 - rho_other) * (q_hat - labels) - 2 * rho_same * (q_hat + labels)) / d
    np.testing.assert_allclose(_grad(q_hat, labels, rho_pos, rho_neg), general, rtol=1e-5)
    # Eq. 18's last line holds for asymmetric rates too.
    np.testing.assert_allclose(general, 2 * (q_hat - labels) - 4 * rho_same * labels / d, rtol=1e-5)


@pytest.mark.parametrize("rho_pos,rho_neg", [(0.5, 0.5), (0.7, 0.4), (-0.1, 0.0), (0.0, -0.2)])
def test_invalid_noise_rates(rho_pos, rho_neg):
    with pytest.raises(ValueError, match="rho"):
        unbiased_mse(tf.zeros(2), tf.ones(2), rho_pos, rho_neg)


def test_loss_can_be_negative():
    """A confident correct prediction gets a negative corrected loss (expected)."""
    value = unbiased_mse(tf.constant([1.0]), tf.constant([1.0]), 0.1, 0.1).numpy()
    assert value[0] < 0


@pytest.mark.parametrize("rho_pos,rho_neg", [(0.005, 0.005), (0.1, 0.1), (0.3, 0.05), (0.02, 0.4)])
def test_expands_to_squared_error_towards_an_inflated_label(rho_pos, rho_neg):
    """Eq. 15 = (q - t)^2 + 1 - t^2 with t = (q~ + rho_pos - rho_neg) / (1 - rho_pos - rho_neg):
    per element a squared error towards a label beyond +-1, never favouring a flip."""
    rng = np.random.default_rng(0)
    q_hat = rng.uniform(-2, 2, 1000).astype(np.float32)
    labels = rng.choice([-1.0, 1.0], 1000).astype(np.float32)
    t = (labels + rho_pos - rho_neg) / (1 - rho_pos - rho_neg)
    np.testing.assert_allclose(unbiased_mse(q_hat, labels, rho_pos, rho_neg), (q_hat - t) ** 2 + 1 - t ** 2,
                               rtol=1e-4, atol=1e-4)
    assert np.all(np.sign(t) == labels) and np.all(np.abs(t) > 0.5)
