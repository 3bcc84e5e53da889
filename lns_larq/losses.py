"""Losses for learning binary weights from noisy labels (LNS, Han et al. 2020, Sec. 3.2)."""

import math

import tensorflow as tf
from tensorflow.types.experimental import TensorLike


def check_noise_rates(rho_pos: float, rho_neg: float) -> None:
    """Raise `ValueError` unless 0 <= rho_pos, rho_neg and rho_pos + rho_neg < 1."""
    for name, rho in (("rho_pos", rho_pos), ("rho_neg", rho_neg)):
        if not isinstance(rho, (int, float)) or math.isnan(rho) or rho < 0:
            raise ValueError(f"{name} must be a number >= 0, got {rho!r}.")
    if rho_pos + rho_neg >= 1:
        raise ValueError(
            "Noise rates must satisfy rho_pos + rho_neg < 1, got "
            f"rho_pos={rho_pos} + rho_neg={rho_neg} = {rho_pos + rho_neg}."
        )


def unbiased_mse(q_hat: TensorLike, q_noisy: TensorLike, rho_pos: float, rho_neg: float) -> tf.Tensor:
    r"""Element-wise unbiased squared error under class-conditional label noise.

    Paper Eq. 15 with \(\ell(\hat q, q) = (\hat q - q)^2\):

    \[
    \tilde\ell(\hat q, \tilde q) = \frac{(1 - \rho_{-\tilde q})\,\ell(\hat q, \tilde q)
        - \rho_{\tilde q}\,\ell(\hat q, -\tilde q)}{1 - \rho_{+1} - \rho_{-1}}
    \]

    Noise convention (paper Eqs. 8-9; the sentence after Eq. 9 states it the other
    way round, the equations and Eqs. 11-15 use this one):

    - `rho_pos` \(= \rho_{+1} = P(\tilde q = -1 \mid q = +1)\), a true +1 read as -1;
    - `rho_neg` \(= \rho_{-1} = P(\tilde q = +1 \mid q = -1)\), a true -1 read as +1.

    With it, \(E_{\tilde q \mid q}[\tilde\ell(\hat q, \tilde q)] = (\hat q - q)^2\)
    (Eq. 10), and the gradient is Eq. 18:
    \(\partial\tilde\ell/\partial\hat q = 2(\hat q - \tilde q)
    - 4\rho_{\tilde q}\tilde q / (1 - \rho_{+1} - \rho_{-1})\).
    The corrected loss can be negative; that is expected, only its expectation is a
    squared error.

    ```python
    q_hat = tf.constant([0.9, -0.2])
    labels = tf.constant([1.0, 1.0])
    lns_larq.losses.unbiased_mse(q_hat, labels, rho_pos=0.005, rho_neg=0.005)
    ```

    # Arguments
        q_hat: Continuous predictions of the binary weights.
        q_noisy: Noisy labels in {-1, +1}, e.g. `sign(W)`.
        rho_pos: Noise rate of the +1 class, >= 0.
        rho_neg: Noise rate of the -1 class, >= 0, with `rho_pos + rho_neg < 1`.

    # Returns
        A tensor of the shape of `q_hat`, no reduction.

    # Raises
        ValueError: for a negative rate or `rho_pos + rho_neg >= 1`.
    """
    check_noise_rates(rho_pos, rho_neg)
    q_hat = tf.convert_to_tensor(q_hat)
    q_noisy = tf.cast(q_noisy, q_hat.dtype)
    is_pos = q_noisy > 0
    # rho_{q~} and rho_{-q~} for every element.
    rho_same = tf.where(is_pos, rho_pos, rho_neg)
    rho_other = tf.where(is_pos, rho_neg, rho_pos)
    loss_same = tf.square(q_hat - q_noisy)
    loss_other = tf.square(q_hat + q_noisy)
    return ((1.0 - rho_other) * loss_same - rho_same * loss_other) / (
        1.0 - rho_pos - rho_neg
    )
