"""Weight quantizers: the DoReFa layer-scaled sign and the LNS learned mapping.

Both subclass Larq's quantizer base, so they plug into `kernel_quantizer=` of any
Larq layer, count as binary in `larq.models.summary`, and serialize by name:

```python
import lns_larq  # first: it selects Keras 2 (tf_keras), which Larq needs
import larq as lq

conv = lq.layers.QuantConv2D(
    16, 3, padding="same", pad_values=1.0, use_bias=False,
    input_quantizer="ste_sign", kernel_quantizer="lns",
    kernel_constraint="weight_clip",
)
```
"""

from typing import Any

import larq as lq
import tensorflow as tf
from larq import utils
from tensorflow.types.experimental import TensorLike

from lns_larq.keras_utils import all_layers
from lns_larq.losses import check_noise_rates, unbiased_mse
from lns_larq.methods import Option

__all__ = [
    "DoReFaSign",
    "LNSQuantizer",
    "LNS_OPTIONS",
    "WEIGHT_QUANTIZERS",
    "lns_layers",
    "mapping_network",
    "quantized_kernel",
    "scale_kind",
    "weight_scale",
]

SCALE_KINDS = ("layer", "channel", None)


def weight_scale(kernel: tf.Tensor, scale: str | None) -> tf.Tensor:
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


def scale_kind(quantizer: Any) -> str | None:
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


def _bound(kind, z):
    return tf.tanh(z) if kind == "tanh" else tf.clip_by_value(z, -1.0, 1.0)


def _bound_derivative(kind, z):
    """d b(z) / dz: how much of a gradient at the output reaches the pre-activation."""
    if kind == "tanh":
        return 1.0 - tf.square(tf.tanh(z))
    return tf.cast(tf.abs(z) <= 1.0, z.dtype)


def mapping_network(kind: str, filter_shape: tuple[int, int, int], width: float = 2.0, decay: float = 0.0,
                    zero_last: bool = False, name: str = "mapping", filters: int | None = None) -> tf.keras.Sequential:
    r"""The mapping \(f_\theta\) of one layer, a Keras model from filters to filters.

    Input and output are batches of filters seen as images, `(n, kh, kw, c_in)`.
    The hidden width is `width` times the input's size, times
    \(\min(2, \max(1, n / c_{in}))\) for a layer of `filters` \(= n\) filters: one
    mapping fits all \(n\) filters of its layer, so a conv that widens (\(n = 2c_{in}\),
    the stride-2 convs of ResNet) gets the same capacity per filter as one that does
    not (`docs/design.md`).

    - `"conv3"` (the paper's): three 3x3 convs, c -> hc -> hc -> c, padding "same",
      each hidden conv followed by `LayerNormalization` over the filter's axes and
      ReLU. The paper puts batch normalisation there; its batch would be the layer's
      filters, coupling them and behaving differently in training and inference.
      Normalising each filter on its own keeps every binary weight a function of its
      own filter, identically in training, inference and export.
    - `"mlp"`: the flattened filter (d = kh kw c) through d -> wd -> d.
    - `"linear"`: one d x d affine map of the flattened filter.

    `decay` is an L2 penalty on the kernels (weight decay on \(\theta\)), added to
    `model.losses`; `zero_last` starts the last layer at zero (the gated form).

    ```python
    net = lns_larq.quantizers.mapping_network("conv3", (3, 3, 16))
    net(tf.zeros((32, 3, 3, 16))).shape  # (32, 3, 3, 16)
    ```
    """
    kh, kw, c = (int(d) for d in filter_shape)
    # At most 2, the ratio the widening was measured on (ResNet's stride-2 convs).
    # Uncapped, AlexNet's fc6 and fc7 (n = 16 c_in) got 642 M mapping weights each
    # at width 2, ten times AlexNet itself: the hidden conv grows with the square.
    width = width * min(2.0, max(1.0, int(filters or c) / c))
    layers = tf.keras.layers
    reg = tf.keras.regularizers.L2(decay) if decay else None
    last_init = "zeros" if zero_last else "glorot_uniform"
    if kind == "conv3":
        hidden = max(1, int(round(width * c)))
        stack = []
        for _ in range(2):
            stack += [
                layers.Conv2D(hidden, 3, padding="same", use_bias=False,
                              kernel_initializer="he_normal", kernel_regularizer=reg),
                layers.LayerNormalization(axis=[1, 2, 3], epsilon=1e-5),
                layers.ReLU(),
            ]
        stack.append(layers.Conv2D(c, 3, padding="same", kernel_initializer=last_init,
                                   kernel_regularizer=reg))
    else:
        d = kh * kw * c
        stack = [layers.Flatten()]
        if kind == "mlp":
            stack += [
                layers.Dense(max(1, int(round(width * d))), use_bias=False,
                             kernel_initializer="he_normal", kernel_regularizer=reg),
                layers.LayerNormalization(axis=-1, epsilon=1e-5),
                layers.ReLU(),
            ]
        stack += [layers.Dense(d, kernel_initializer=last_init, kernel_regularizer=reg),
                  layers.Reshape((kh, kw, c))]
    net = tf.keras.Sequential(stack, name=name)
    net.build((None, kh, kw, c))
    return net


# LNS's options: the keyword arguments of `LNSQuantizer` besides `scale`, which
# `lnsify`, `<model>_lns`, `TrainConfig` and `train/fit.py` take under these names.
LNS_OPTIONS = (
    Option("mapping", "conv3", "Mapping network f_theta: conv3 (the paper's), mlp or linear.",
           choices=("conv3", "mlp", "linear")),
    Option("alpha", 1.0, "Weight of the noisy-supervision loss (Eq. 21); 0 is the 'w/o noisy supervision' "
           "ablation.", lower=0),
    Option("rho_pos", 0.005, "rho(+1) = P(label -1 | true +1).", lower=0, shorthand="rho"),
    Option("rho_neg", None, "rho(-1) = P(label +1 | true -1); default rho_pos.", type=float, lower=0,
           shorthand="rho"),
    Option("bound", "tanh", "Output bound of the mapping.", choices=("tanh", "hardtanh")),
    Option("width", 2.0, "Hidden width of the mapping relative to its input (paper: 2), times c_out / c_in "
           "(at most 2) where a conv widens.", above=0, aliases=("mapping_width",)),
    Option("decay", 0.0, "L2 weight decay on the mapping's kernels (theta).", lower=0,
           aliases=("mapping_decay",)),
    Option("gated", False, "Gated mapping z = W_n (1 + f(W_n)), its last layer at zero, instead of "
           "z = f(W_n)."),
    Option("loss_input", "preactivation", "Eq. 15 on the mapping's pre-activation z (keeps both gradients) "
           "or on its bounded output.", choices=("preactivation", "output")),
    Option("labels", "current", "Noisy labels: sign of the current latent weights (Algorithm 1) or of the "
           "pretrained ones, frozen.", choices=("current", "pretrained")),
)


@utils.register_alias("lns")
@utils.register_keras_custom_object
class LNSQuantizer(lq.quantizers._BaseQuantizer):
    r"""Binary weights predicted from whole filters by a learned mapping (LNS).

    Replaces \(\tilde Q = \mathrm{sign}(W)\) by the prediction of a small network
    \(f_\theta\) that sees each output filter \(W \in \mathbb{R}^{k\times k\times c}\)
    as a whole (paper Eq. 4):

    \[
    z = f_\theta(W_n),\quad W_n = W / \mathrm{rms}(W),\qquad
    \hat Q_c = b(z),\qquad Q = s \cdot \mathrm{sign}(\hat Q_c)
    \]

    with `rms` per filter, \(b\) the output bound (`tanh` or `hardtanh`), \(s\) the
    scale of the baseline quantizer being replaced (see `weight_scale`), and a
    straight-through estimator for the sign. \(f_\theta\) starts random: the warm
    start (`lns_larq.lns.warm_start`) trains it to reproduce \(\mathrm{sign}(W)\), up
    to the weights it corrects.

    **Noisy supervision.** In training (`training=True`, as under `fit`) the noisy
    labels \(\tilde Q\) supervise the mapping through the corrected loss of Eq. 15,
    registered with `add_loss` as \(\alpha\,\mathrm{mean}\,\tilde\ell\). Keras `fit`
    then minimises \(\ell_{cls} + \alpha\sum_i\tilde\ell_i\) (Eq. 21); the auxiliary
    gradient reaches \(\theta\) and \(W\) (Eqs. 19, 20). Eq. 15 equals
    \((\hat q - t)^2 + 1 - t^2\) with \(t = (\tilde q + \rho_{+1} - \rho_{-1}) /
    (1 - \rho_{+1} - \rho_{-1})\), so its minimum lies at \(|t| > 1\), outside any
    bound. Applied to the bounded output (`loss_input="output"`), it drives \(z\)
    without limit into tanh's saturation, where the classification gradient
    (\(\propto b'(z)\)) dies (`docs/design.md`). Applied to the pre-activation
    (`loss_input="preactivation"`, the default), \(z\) settles at \(\pm t \approx
    \pm 1.01\), where \(\tanh'(z) \approx 0.41\): both losses keep their gradient. (With `hardtanh`,
    \(b'(\pm 1.01) = 0\), so keep `tanh` for `"preactivation"`.)

    **Labels.** `labels="current"` (default, the paper's Algorithm 1): \(\tilde Q =
    \mathrm{sign}(W)\) of the current latent weights, recomputed every step, without
    gradient. `labels="pretrained"`: \(\mathrm{sign}(W_0)\), frozen by
    `freeze_labels` (which `lnsify` calls) when the model is converted and saved
    with it; until frozen, the current signs are used.

    **Correction versus memorisation.** The paper's conv3 mapping has 72 c^2
    parameters, more than the layer has weights, so trained long enough it fits
    every noisy label. What it corrects first and forgets later is decided by
    `width`, `decay` (L2 on \(\theta\)) and the length of the warm start (the
    controlled task of `lns_larq.noisy_filters`, `docs/controlled.md`).

    **Gated form** (`gated=True`):
    \(z = W_n \odot (1 + f_\theta(W_n))\) with the last layer of \(f_\theta\) at
    zero, so the untrained mapping is \(\mathrm{sign}(W)\) exactly. Per element,
    Eq. 15 never favours a flip, and it only raises the gains, so the gated mapping
    stays at \(\mathrm{sign}(W)\) (`docs/design.md`).

    ```python
    conv = lq.layers.QuantConv2D(
        32, 3, padding="same", pad_values=1.0, use_bias=False,
        input_quantizer="ste_sign",
        kernel_quantizer=lns_larq.LNSQuantizer(scale="layer", alpha=1.0, rho_pos=0.005),
        kernel_constraint="weight_clip",
    )
    ```

    # Arguments
        scale: `"layer"` (DoReFa), `"channel"` (XNOR) or `None` (BinaryNet).
        **options: LNS's options, declared with their defaults and valid values in
            `LNS_OPTIONS`:
        mapping: `"conv3"` (paper), `"mlp"` or `"linear"` (see `mapping_network`).
        alpha: Weight of the auxiliary loss; 0 adds none (the "w/o noisy
            supervision" ablation).
        rho_pos: \(P(\tilde q=-1 \mid q=+1)\), see `lns_larq.losses.unbiased_mse`.
        rho_neg: \(P(\tilde q=+1 \mid q=-1)\); defaults to `rho_pos`.
        bound: `"tanh"` (default) or `"hardtanh"`.
        width: Hidden width of the mapping relative to its input (paper: 2), times
            c_out / c_in (at most 2) where a conv widens (see `mapping_network`).
        decay: L2 weight decay on the mapping's kernels (0: none).
        gated: The gated form above instead of the paper's \(z = f_\theta(W_n)\).
        loss_input: `"preactivation"` (Eq. 15 on \(z\), default) or `"output"`
            (on \(\hat Q_c\)).
        labels: `"current"` or `"pretrained"`, see above.
        metrics: Larq quantizer metrics, e.g. `["flip_ratio"]`.

    # Raises
        ValueError: for an invalid option, naming it and its valid values.

    # References
        - [Training Binary Neural Networks through Learning with Noisy
          Supervision](https://arxiv.org/abs/2010.04871), Han et al., ICML 2020.
    """

    precision = 1

    def __init__(self, scale="layer", **kwargs):
        options = {option.name: kwargs.pop(option.name, option.default) for option in LNS_OPTIONS}
        if scale not in SCALE_KINDS:
            raise ValueError(f"scale must be one of {SCALE_KINDS}, got {scale!r}.")
        for option in LNS_OPTIONS:
            option.check(options[option.name])
        if options["rho_neg"] is None:
            options["rho_neg"] = options["rho_pos"]
        check_noise_rates(options["rho_pos"], options["rho_neg"])
        for option in LNS_OPTIONS:
            setattr(self, option.name, option.value_type(options[option.name]))
        self.scale = scale
        self.use_labels = False  # see lns_larq.lns.labels_as_weights
        super().__init__(**kwargs)

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        if shape.rank not in (2, 4):
            raise ValueError(
                f"LNSQuantizer maps conv2d (rank 4) or dense (rank 2) kernels, got "
                f"shape {shape}."
            )
        filter_shape = (1, 1, shape[0]) if shape.rank == 2 else shape[:3]
        self.network = mapping_network(
            self.mapping, filter_shape, self.width, self.decay, zero_last=self.gated,
            filters=shape[-1],
        )
        if self.labels == "pretrained":
            self.pretrained_labels = self.add_weight(
                "pretrained_labels", shape, initializer="zeros", trainable=False
            )
        super().build(input_shape)

    @property
    def non_trainable_weights(self):
        # Larq's base quantizer hides its non-trainable weights (metric state); the
        # frozen labels must be saved with the model.
        return [self.pretrained_labels] if hasattr(self, "pretrained_labels") else []

    def freeze_labels(self, kernel: TensorLike) -> None:
        """Freeze \\(\\mathrm{sign}(W_0)\\) of `kernel` as the noisy labels (`labels="pretrained"`)."""
        if self.labels == "pretrained":
            self.pretrained_labels.assign(lq.math.sign(tf.convert_to_tensor(kernel)))

    def noisy_labels(self, kernel: tf.Tensor) -> tf.Tensor:
        """The noisy labels \\(\\tilde Q\\) of `kernel`, without gradient."""
        current = tf.stop_gradient(lq.math.sign(kernel))
        if self.labels == "current":
            return current
        frozen = tf.convert_to_tensor(self.pretrained_labels)
        return tf.where(frozen != 0, frozen, current)

    def preactivation(self, kernel: tf.Tensor) -> tf.Tensor:
        """The mapping's pre-activation \\(z\\), in the shape of `kernel`."""
        images = _filters_as_images(kernel)
        rms = tf.sqrt(tf.reduce_mean(tf.square(images), axis=[1, 2, 3], keepdims=True))
        w_n = images / (rms + 1e-12)
        z = self.network(w_n)
        if self.gated:
            z = w_n * (1.0 + z)
        return _images_as_filters(z, tf.shape(kernel))

    def predict_continuous(self, kernel: tf.Tensor) -> tf.Tensor:
        """The continuous prediction \\(\\hat Q_c = b(z)\\)."""
        return _bound(self.bound, self.preactivation(kernel))

    def auxiliary_loss(self, kernel: tf.Tensor, z: tf.Tensor | None = None) -> tf.Tensor:
        """\\(\\alpha\\,\\mathrm{mean}\\,\\tilde\\ell\\) of paper Eq. 15 for this layer (Eq. 17)."""
        z = self.preactivation(kernel) if z is None else z
        prediction = z if self.loss_input == "preactivation" else _bound(self.bound, z)
        return self.alpha * tf.reduce_mean(
            unbiased_mse(prediction, self.noisy_labels(kernel), self.rho_pos, self.rho_neg)
        )

    def call(self, inputs, training=None):
        if self.use_labels:  # the network at its noisy labels, e.g. the pretrained one
            return super().call(weight_scale(inputs, self.scale) * self.noisy_labels(inputs))
        z = self.preactivation(inputs)
        # Algorithm 1 computes the auxiliary loss in training only; a loss added while
        # Keras builds a functional model (training=None) would outlive its graph.
        if self.alpha > 0 and training:
            self.add_loss(self.auxiliary_loss(inputs, z))
        outputs = weight_scale(inputs, self.scale) * lq.quantizers.ste_sign(_bound(self.bound, z))
        return super().call(outputs)

    def state(self, kernel: tf.Tensor) -> dict[str, float]:
        """Diagnostics of the mapping on `kernel` (inference mode), as Python floats.

        - `disagreement`: fraction of binary weights whose sign differs from the
          noisy labels;
        - `saturated`: fraction with \\(|\\hat q| > 0.99\\), where the classification
          gradient reaching \\(z\\) is cut to under 2 % (tanh) or to zero (hardtanh);
        - `bound_derivative`: mean \\(b'(z)\\), the factor the classification gradient
          keeps on its way to \\(\\theta\\) and \\(W\\).
        """
        z = self.preactivation(kernel)
        q_hat = _bound(self.bound, z)
        labels = self.noisy_labels(kernel)
        return {
            "disagreement": float(tf.reduce_mean(tf.cast(lq.math.sign(q_hat) != labels, tf.float32))),
            "saturated": float(tf.reduce_mean(tf.cast(tf.abs(q_hat) > 0.99, tf.float32))),
            "bound_derivative": float(tf.reduce_mean(_bound_derivative(self.bound, z))),
        }

    def get_config(self):
        return {
            **super().get_config(),
            "scale": self.scale,
            **{option.name: getattr(self, option.name) for option in LNS_OPTIONS},
        }


def quantized_kernel(layer: tf.keras.layers.Layer) -> tf.Tensor:
    """The kernel `layer` convolves with (inference mode, no auxiliary loss added)."""
    quantizer = layer.kernel_quantizer
    # A tensor, not the variable: under tf.distribute the latent variable is a
    # MirroredVariable, which `tf.custom_gradient` (ste_sign) rejects.
    latent = tf.convert_to_tensor(layer.kernel.latent_variable)
    if isinstance(quantizer, LNSQuantizer):
        return quantizer(latent, training=False)
    return quantizer(latent)


def lns_layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The layers of `model` whose kernel quantizer is an `LNSQuantizer`."""
    return [
        layer for layer in all_layers(model)
        if isinstance(getattr(layer, "kernel_quantizer", None), LNSQuantizer)
    ]
