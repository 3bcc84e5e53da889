"""Weight quantizers: the DoReFa layer-scaled sign and the LNS learned mapping.

Both subclass Larq's quantizer base, so they plug into `kernel_quantizer=` of any
Larq layer, count as binary in `larq.models.summary`, and serialize by name:

```python
import larq as lq
import lns_larq

conv = lq.layers.QuantConv2D(
    16, 3, padding="same", pad_values=1.0, use_bias=False,
    input_quantizer="ste_sign", kernel_quantizer="lns",
    kernel_constraint="weight_clip",
)
```
"""

import larq as lq
import tensorflow as tf
from larq import utils

from lns_larq.losses import check_noise_rates, unbiased_mse

__all__ = [
    "DoReFaSign",
    "LNSQuantizer",
    "WEIGHT_QUANTIZERS",
    "scale_kind",
    "weight_scale",
]

SCALE_KINDS = ("layer", "channel", None)


def weight_scale(kernel, scale):
    r"""The scale factor of binary weights, from the latent kernel, without gradient.

    - `"layer"` (DoReFa-Net): \(\frac{1}{n}\lVert W \rVert_1\), one scalar per layer;
    - `"channel"` (XNOR-Net): the mean absolute weight of each output channel (the last
      kernel axis);
    - `None` (BinaryNet): 1.
    """
    if scale is None:
        return tf.constant(1.0, kernel.dtype)
    if scale == "layer":
        axes = None
    elif scale == "channel":
        axes = list(range(len(kernel.shape) - 1))
    else:
        raise ValueError(f"scale must be one of {SCALE_KINDS}, got {scale!r}.")
    return tf.stop_gradient(tf.reduce_mean(tf.abs(kernel), axis=axes))


@utils.register_alias("dorefa_sign")
@utils.register_keras_custom_object
class DoReFaSign(lq.quantizers._BaseQuantizer):
    r"""Binary weights with a layer-wise scale, as DoReFa-Net uses for 1-bit weights.

    \[
    q(W) = \frac{\lVert W\rVert_1}{n}\,\mathrm{sign}(W)
    \]

    The scale carries no gradient; `sign` has the straight-through estimator, clipped
    at `clip_value` like Larq's `ste_sign`. Larq's own `DoReFa(k_bit=1)` quantizer
    has no scale, so this is the paper's baseline quantizer.

    ```python
    q = lns_larq.quantizers.DoReFaSign()
    q(tf.constant([0.5, -0.1, 0.3]))  # [0.3, -0.3, 0.3]
    ```

    # Arguments
        clip_value: Threshold for clipping gradients; `None` for no clipping.
        metrics: Larq quantizer metrics, e.g. `["flip_ratio"]`.

    # References
        - [DoReFa-Net](https://arxiv.org/abs/1606.06160)
    """

    precision = 1

    def __init__(self, clip_value=1.0, **kwargs):
        self.clip_value = clip_value
        super().__init__(**kwargs)

    def call(self, inputs):
        outputs = weight_scale(inputs, "layer") * lq.quantizers.ste_sign(
            inputs, clip_value=self.clip_value
        )
        return super().call(outputs)

    def get_config(self):
        return {**super().get_config(), "clip_value": self.clip_value}


# The baseline weight quantizers of the paper, by the method's name:
# (Larq kernel quantizer, scale kind that an LNS replacement keeps).
WEIGHT_QUANTIZERS = {
    "dorefa": ("dorefa_sign", "layer"),
    "xnor": ("magnitude_aware_sign", "channel"),
    "binarynet": ("ste_sign", None),
}


def scale_kind(quantizer):
    """The scale kind (`"layer"`, `"channel"` or `None`) a binary quantizer applies."""
    if isinstance(quantizer, DoReFaSign):
        return "layer"
    if isinstance(quantizer, lq.quantizers.MagnitudeAwareSign):
        return "channel"
    if isinstance(quantizer, LNSQuantizer):
        return quantizer.scale
    return None


def _filters_as_images(kernel):
    """(kh, kw, c_in, c_out) kernel -> (c_out, kh, kw, c_in): one image per filter."""
    if len(kernel.shape) == 2:  # dense kernel: each unit's weights as a 1x1 image
        kernel = kernel[None, None]
    return tf.transpose(kernel, [3, 0, 1, 2])


def _images_as_filters(images, kernel_shape):
    kernel = tf.transpose(images, [1, 2, 3, 0])
    return tf.reshape(kernel, kernel_shape)


@utils.register_alias("lns")
@utils.register_keras_custom_object
class LNSQuantizer(lq.quantizers._BaseQuantizer):
    r"""Binary weights predicted from whole filters by a learned mapping (LNS).

    Replaces \(\tilde Q = \mathrm{sign}(W)\) by the prediction of a small network
    \(f_\theta\) that sees each output filter \(W \in \mathbb{R}^{k\times k\times c}\)
    as a whole (paper Eq. 4), binarized with a straight-through estimator:

    \[
    \hat Q_c = b\big(W_n \odot (1 + f_\theta(W_n))\big),\quad W_n = W / \mathrm{rms}(W),
    \qquad Q = s \cdot \mathrm{sign}(\hat Q_c)
    \]

    where `rms` is taken per filter, \(b\) is the output bound (`tanh` or `hardtanh`)
    and \(s\) the scale of the baseline quantizer being replaced (see
    `weight_scale`). \(f_\theta\) predicts a gain for every weight from the whole
    filter; a weight's binary value differs from its sign where the gain goes
    negative. The last layer of \(f_\theta\) starts at zero, so an untrained mapping
    reproduces \(\mathrm{sign}(W)\) exactly, and the noisy supervision alone only
    raises the gains of weights that agree with their labels: a warm start keeps the
    pretrained binary network (an additive residual \(W_n + f_\theta\) flipped
    0.15-1.7 % of a CIFAR-10 ResNet-20's binary weights in 20 warm-start steps).

    In training (`training=True`, as under `fit`) the noisy labels \(\tilde Q = \mathrm{sign}(W)\) of the *current*
    latent weights (no gradient through them) supervise \(\hat Q_c\) through the
    corrected loss of Eq. 15, registered with `add_loss`:
    \(\alpha \cdot \mathrm{mean}\,\tilde\ell(\hat q, \tilde q)\). Keras `fit` then
    minimises \(\ell_{cls} + \alpha \sum_i \tilde\ell_i\) (Eq. 21), and the auxiliary
    gradient reaches both \(\theta\) and \(W\) (Eqs. 19, 20).

    Mappings (`mapping=`):

    - `"conv3"` (the paper's): three 3x3 convs, c -> 2c -> 2c -> c (`width` sets the
      2), padding 1, stride 1, normalisation and ReLU after the first two.
    - `"mlp"`: the flattened filter (d = k*k*c) through d -> width*d -> d.
    - `"linear"`: one d x d affine map of the flattened filter.

    The paper puts batch normalisation after the first two convs; its "batch" would
    be the layer's filters, which couples the filters and changes the mapping between
    training and inference. Each filter is normalised on its own instead (mean and
    variance over its k x k x 2c activations, learned gain and bias per channel), so
    a binary weight depends only on its own filter, identically in training,
    inference and export.

    ```python
    conv = lq.layers.QuantConv2D(
        32, 3, padding="same", pad_values=1.0, use_bias=False,
        input_quantizer="ste_sign",
        kernel_quantizer=lns_larq.LNSQuantizer(scale="layer", alpha=1.0, rho_pos=0.005),
        kernel_constraint="weight_clip",
    )
    ```

    # Arguments
        mapping: `"conv3"`, `"mlp"` or `"linear"`.
        scale: `"layer"` (DoReFa), `"channel"` (XNOR) or `None` (BinaryNet).
        alpha: Weight of the auxiliary loss; 0 adds none (the "w/o noisy
            supervision" ablation).
        rho_pos: \(P(\tilde q=-1 \mid q=+1)\), see `lns_larq.losses.unbiased_mse`.
        rho_neg: \(P(\tilde q=+1 \mid q=-1)\); defaults to `rho_pos`.
        bound: `"tanh"` (default: keeps a gradient where the corrected loss pushes
            \(\hat q\) beyond \(\pm 1\)) or `"hardtanh"`.
        width: Hidden width of the mapping relative to its input (paper: 2). Lower
            it to cut the 72 c^2 parameters of a conv3 mapping on wide layers.
        metrics: Larq quantizer metrics, e.g. `["flip_ratio"]`.

    # References
        - [Training Binary Neural Networks through Learning with Noisy
          Supervision](https://arxiv.org/abs/2010.04239), Han et al., ICML 2020.
    """

    precision = 1
    MAPPINGS = ("conv3", "mlp", "linear")
    BOUNDS = ("tanh", "hardtanh")

    def __init__(
        self,
        mapping="conv3",
        scale="layer",
        alpha=1.0,
        rho_pos=0.005,
        rho_neg=None,
        bound="tanh",
        width=2.0,
        **kwargs,
    ):
        if mapping not in self.MAPPINGS:
            raise ValueError(f"mapping must be one of {self.MAPPINGS}, got {mapping!r}.")
        if scale not in SCALE_KINDS:
            raise ValueError(f"scale must be one of {SCALE_KINDS}, got {scale!r}.")
        if bound not in self.BOUNDS:
            raise ValueError(f"bound must be one of {self.BOUNDS}, got {bound!r}.")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}.")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}.")
        rho_neg = rho_pos if rho_neg is None else rho_neg
        check_noise_rates(rho_pos, rho_neg)
        self.mapping = mapping
        self.scale = scale
        self.alpha = float(alpha)
        self.rho_pos = float(rho_pos)
        self.rho_neg = float(rho_neg)
        self.bound = bound
        self.width = float(width)
        super().__init__(**kwargs)

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        if shape.rank not in (2, 4):
            raise ValueError(
                f"LNSQuantizer maps conv2d (rank 4) or dense (rank 2) kernels, got "
                f"shape {shape}."
            )
        kh, kw, c_in = (1, 1, shape[0]) if shape.rank == 2 else shape[:3]
        ops = []
        zeros, he = "zeros", "he_normal"

        def dense(name, n_in, n_out, last):
            return (
                self.add_weight(f"{name}_kernel", (n_in, n_out), initializer=zeros if last else he),
                self.add_weight(f"{name}_bias", (n_out,), initializer="zeros"),
            )

        if self.mapping == "conv3":
            hidden = max(1, int(round(self.width * c_in)))
            sizes = [(c_in, hidden), (hidden, hidden), (hidden, c_in)]
            for i, (n_in, n_out) in enumerate(sizes):
                last = i == len(sizes) - 1
                kernel = self.add_weight(
                    f"conv{i + 1}_kernel", (3, 3, n_in, n_out),
                    initializer=zeros if last else he,
                )
                if last:
                    ops.append(("conv", kernel, self.add_weight(
                        f"conv{i + 1}_bias", (n_out,), initializer="zeros")))
                else:
                    ops.append(("conv", kernel, None))
                    ops.append(("norm", *self._norm_weights(f"norm{i + 1}", n_out)))
        else:
            d = kh * kw * c_in
            if self.mapping == "mlp":
                hidden = max(1, int(round(self.width * d)))
                ops.append(("dense", *dense("dense1", d, hidden, last=False)))
                ops.append(("norm", *self._norm_weights("norm1", hidden)))
                ops.append(("dense", *dense("dense2", hidden, d, last=True)))
            else:
                ops.append(("dense", *dense("dense1", d, d, last=True)))
        # add_weight already tracks the variables; a tracked list would alias them.
        object.__setattr__(self, "_mapping_ops", tuple(ops))
        super().build(input_shape)

    def _norm_weights(self, name, channels):
        return (
            self.add_weight(f"{name}_gamma", (channels,), initializer="ones"),
            self.add_weight(f"{name}_beta", (channels,), initializer="zeros"),
        )

    def predict_continuous(self, kernel):
        """The continuous prediction \\(\\hat Q_c = b(W_n (1 + f_\\theta(W_n)))\\)."""
        images = _filters_as_images(kernel)
        rms = tf.sqrt(tf.reduce_mean(tf.square(images), axis=[1, 2, 3], keepdims=True))
        x = images / (rms + 1e-12)
        if self.mapping != "conv3":
            x = tf.reshape(x, [tf.shape(x)[0], -1])
        residual = x
        for kind, w, b in self._mapping_ops:
            if kind == "conv":
                x = tf.nn.conv2d(x, w, strides=1, padding="SAME")
                if b is not None:
                    x = x + b
            elif kind == "dense":
                x = tf.matmul(x, w) + b
            else:  # per-filter normalisation, then ReLU
                axes = list(range(1, len(x.shape)))
                mean, var = tf.nn.moments(x, axes=axes, keepdims=True)
                x = tf.nn.relu((x - mean) * tf.math.rsqrt(var + 1e-5) * w + b)
        x = residual * (1.0 + x)
        if self.mapping != "conv3":
            x = tf.reshape(x, tf.shape(images))
        x = tf.tanh(x) if self.bound == "tanh" else tf.clip_by_value(x, -1.0, 1.0)
        return _images_as_filters(x, tf.shape(kernel))

    def call(self, inputs, training=None):
        q_hat = self.predict_continuous(inputs)
        # Algorithm 1 computes the auxiliary loss in training only; a loss added while
        # Keras builds a functional model (training=None) would outlive its graph.
        if self.alpha > 0 and training:
            noisy_labels = tf.stop_gradient(lq.math.sign(inputs))
            self.add_loss(
                self.alpha
                * tf.reduce_mean(unbiased_mse(q_hat, noisy_labels, self.rho_pos, self.rho_neg))
            )
        outputs = weight_scale(inputs, self.scale) * lq.quantizers.ste_sign(q_hat)
        return super().call(outputs)

    def get_config(self):
        return {
            **super().get_config(),
            "mapping": self.mapping,
            "scale": self.scale,
            "alpha": self.alpha,
            "rho_pos": self.rho_pos,
            "rho_neg": self.rho_neg,
            "bound": self.bound,
            "width": self.width,
        }


def quantized_kernel(layer):
    """The kernel `layer` convolves with (inference mode, no auxiliary loss added)."""
    quantizer = layer.kernel_quantizer
    # A tensor, not the variable: under tf.distribute the latent variable is a
    # MirroredVariable, which `tf.custom_gradient` (ste_sign) rejects.
    latent = tf.convert_to_tensor(layer.kernel.latent_variable)
    if isinstance(quantizer, LNSQuantizer):
        return quantizer(latent, training=False)
    return quantizer(latent)
