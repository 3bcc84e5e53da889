r"""BONN: Bayesian Optimized 1-Bit CNNs (Gu et al., ICCV 2019) on Larq.

BONN trains an ordinary sign/STE binary network and adds two Bayesian losses to the
cross-entropy (paper Eq. 10, in this module's normalisation, see below):

\[
L = L_{cls} + \frac{\lambda}{2}\sum_l L^{(l)}_{kernel} + \frac{\theta}{2} L_{feature}
\]

- `BayesianKernelLoss`: a MAP prior on the latent weights \(x\) of one binarized
  conv: the reconstruction \(\lVert\mathrm{sign}(x) - w x\rVert^2\) with a learned
  positive scale \(w\), plus a two-mode Gaussian mixture centred at \(+\mu_+\) and
  \(-\mu_-\) with one learned variance per mode and its log-determinant.
- `BONNModel`: the network itself (a functional model with the very same graph) whose
  `train_step` and `test_step` add the feature loss, a learned diagonal Gaussian per
  class on the features entering the classifier; it needs the labels, which Keras
  only hands to the train and test steps.

`bonnify(model)` turns any binary Larq model into a BONN model, and
`lns_larq.models.get("<name>_bonn")` builds one from the registry:

```python
import lns_larq
import lns_larq.bonn
import larq_compute_engine as lce
import numpy as np
import tensorflow as tf

model = lns_larq.models.get("resnet20_bonn", quantizer="dorefa", bonn_lambda=1e-2, bonn_theta=1e-1)
model.compile("sgd", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
x, y = np.random.rand(64, 32, 32, 3).astype("float32"), np.arange(64) % 10
model.fit(x, y, epochs=1)                # also logs bonn_kernel_loss, bonn_feature_loss
flatbuffer = lce.convert_keras_model(model)  # the plain network: binary convs -> LceBconv2d
```

# Design

The kernel loss is a function of the weights only, so it is a *regulariser*, and it
sits in the slot Keras has for that: the `kernel_regularizer` of each binarized
`QuantConv2D`. `BayesianKernelLoss` is a layer (it owns the learned \(w, \mu_\pm,
\psi_\pm\)) used as that regulariser. The baseline quantizer stays as it is, so the
forward binarization, `scale_kind`, `quantized_kernel`, the flip-rate callback and
pretrained loading are the plain network's, for any binary kernel quantizer
(`docs/design.md`). Keras evaluates regulariser losses as callables in whichever
graph reads `model.losses`, so there is no `training` gating and no loss outliving a
graph. Like weight decay, it counts in the training and the validation loss.

The feature loss needs the labels. `BONNModel` subclasses the functional model: its
graph (what `call`, `predict`, `save` and the LCE converter see) is the plain network,
and only `train_step`/`test_step` also read the classifier's input features to add
\(\frac{\theta}{2}L_{feature}\). The class centres and variances are weights of the
model itself, not layers of its graph, so they never reach an exported model.

# The losses as implemented

For a layer with \(N\) latent weights \(x\), \(P = \{i: x_i \ge 0\}\) (Larq's
\(\mathrm{sign}(0) = +1\)) and \(M = \{i: x_i < 0\}\):

\[
L_{kernel} = \frac{1}{N}\Big[\sum_i (\mathrm{sign}(x_i) - w x_i)^2
  + \nu\sum_{i\in P}\frac{(x_i - \mu_+)^2}{\psi_+}
  + \nu\sum_{i\in M}\frac{(x_i + \mu_-)^2}{\psi_-}
  + \nu\,(|P|\log\psi_+ + |M|\log\psi_-)\Big]
\]

The last term is \(\nu\log\det\Psi\) with \(\Psi = \mathrm{diag}(\psi_+ I_{|P|},
\psi_- I_{|M|})\). \(\mathrm{sign}(x)\) is a constant target (no gradient), as in the
paper's backward pass; the gradient reaches \(x, w, \mu_\pm, \psi_\pm\).

For a batch of \(B\) features \(f_i \in \mathbb{R}^D\) with labels \(m_i\):

\[
L_{feature} = \frac{1}{BD}\sum_i\sum_n \Big[(f_{in} - c_{m_i n})^2
  + \frac{(f_{in} - c_{m_i n})^2}{\sigma^2_{m_i n}} + \log\sigma^2_{m_i n}\Big]
\]

Positive quantities are parameterised so they stay positive:
\(w = \mathrm{softplus}(\cdot)\), \(\mu_\pm = \mathrm{softplus}(\cdot)\), and each
variance is \(v_{min} + \exp(\cdot)\). The floor \(v_{min}\) (`min_variance`, 1e-4)
is not in the paper: without it the MAP objective is unbounded below (two delta peaks
have \(\log\det\Psi \to -\infty\)), and the pull \(\propto 1/\psi\) grows until SGD
diverges.

# Scale convention

Every sum of the paper is a mean here (per layer over its \(N_l\) weights, over the
batch and the \(D\) feature dimensions), so \(\lambda\) and \(\theta\) do not depend
on layer width, batch size or feature width, and each layer's kernel loss is O(1).
The paper's sums correspond to

\[
\lambda_{here} = \lambda_{paper}\cdot N_l, \qquad
\theta_{here} = \theta_{paper}\cdot B\cdot D
\]

(ResNet-20: \(N_l\) from 2,304 to 36,864, \(D = 64\); batch 128). The paper's
reported values (\(\lambda \in \{10^3, 10^4, 10^5\}\), \(\theta \in \{10^2, 10^3,
10^4\}\)) do not carry over through this mapping. The defaults (\(\lambda =
10^{-2}, \theta = 10^{-1}, \nu = 1\)) are set from the gradients they give a
ResNet-20 at the start (`docs/bonn.md`: the measurements and a suggested sweep;
`docs/design.md`).

# References
    - [Bayesian Optimized 1-Bit CNNs](https://arxiv.org/abs/1908.06314),
      Gu et al., ICCV 2019.
"""

import math
from collections.abc import Iterable

import larq as lq
import numpy as np
import tensorflow as tf
from larq import utils
from tensorflow.types.experimental import TensorLike

from lns_larq.keras_utils import (
    all_layers,
    check_binarized_layers_convertible,
    clone_nested,
    copy_weights,
    is_binarized_conv,
)
from lns_larq.methods import Method, Option, register

__all__ = [
    "BONN",
    "BONN_OPTIONS",
    "BONNModel",
    "BayesianKernelLoss",
    "bayesian_feature_loss",
    "bayesian_kernel_loss",
    "bonnify",
    "classifier_layer",
    "initialize_state",
    "kernel_priors",
]

DEFAULT_LAMBDA = 1e-2
DEFAULT_THETA = 1e-1
DEFAULT_NU = 1.0
# BONN's options: the keyword arguments of `bonnify`, which `<model>_bonn`,
# `TrainConfig` and `train/fit.py` take under these names (docs/bonn.md: the scale).
BONN_OPTIONS = (
    Option("bonn_lambda", DEFAULT_LAMBDA, "BONN kernel-loss weight: lambda/2 * sum over binary convs of the "
           "per-weight mean Bayesian kernel loss.", lower=0),
    Option("bonn_theta", DEFAULT_THETA, "BONN feature-loss weight: theta/2 * the per-sample, per-dimension mean "
           "Bayesian feature loss.", lower=0),
    Option("bonn_nu", DEFAULT_NU, "BONN nu: weight of the mixture-prior and log-det terms of the kernel loss.",
           lower=0),
)
_OPTION = {option.name: option for option in BONN_OPTIONS}
MIN_VARIANCE = 1e-4
# Substring of every BONN parameter's name: excluded from decoupled weight decay.
PARAMETER_PREFIX = "bonn_"


def _softplus_inverse(value):
    value = float(value)
    return value + math.log(-math.expm1(-value))


def _variance_raw(variance, min_variance):
    # Inverse of min_variance + exp(raw); a variance at the floor gets a tiny excess.
    return math.log(max(float(variance) - min_variance, 1e-3 * min_variance))


def bayesian_kernel_loss(x: TensorLike, scale: TensorLike, mu_pos: TensorLike, mu_neg: TensorLike,
                         var_pos: TensorLike, var_neg: TensorLike, nu: float = DEFAULT_NU) -> tf.Tensor:
    r"""The Bayesian kernel loss of one layer, \(L_{kernel}\) above (unweighted).

    ```python
    x = tf.constant([0.3, -0.1, 0.2, -0.4])
    lns_larq.bonn.bayesian_kernel_loss(x, 4.0, 0.25, 0.25, 0.01, 0.02)
    ```

    # Arguments
        x: Latent weights, any shape.
        scale: The scale \(w > 0\) (scalar).
        mu_pos, mu_neg: Mode magnitudes \(\mu_\pm > 0\): modes at \(+\mu_+, -\mu_-\).
        var_pos, var_neg: Mode variances \(\psi_\pm > 0\).
        nu: Weight \(\nu\) of the prior terms.

    # Returns
        A scalar: the per-weight mean of the bracket.
    """
    x = tf.convert_to_tensor(x)
    n = tf.cast(tf.size(x), x.dtype)
    target = tf.stop_gradient(lq.math.sign(x))
    positive = target > 0
    n_pos = tf.reduce_sum(tf.cast(positive, x.dtype))
    reconstruction = tf.reduce_sum(tf.square(target - scale * x))
    zeros = tf.zeros_like(x)
    quad_pos = tf.reduce_sum(tf.where(positive, tf.square(x - mu_pos), zeros)) / var_pos
    quad_neg = tf.reduce_sum(tf.where(positive, zeros, tf.square(x + mu_neg))) / var_neg
    log_det = n_pos * tf.math.log(var_pos) + (n - n_pos) * tf.math.log(var_neg)
    return (reconstruction + nu * (quad_pos + quad_neg + log_det)) / n


def bayesian_feature_loss(features: TensorLike, labels: TensorLike, centres: TensorLike,
                          variances: TensorLike) -> tf.Tensor:
    r"""The Bayesian feature loss of a batch, \(L_{feature}\) above (unweighted).

    ```python
    features = tf.random.normal((8, 64))
    labels = tf.range(8) % 10
    lns_larq.bonn.bayesian_feature_loss(features, labels, tf.zeros((10, 64)), tf.ones((10, 64)))
    ```

    # Arguments
        features: `(batch, D)` features entering the classifier.
        labels: `(batch,)` integer classes.
        centres: `(classes, D)` class centres \(c_m\).
        variances: `(classes, D)` per-class diagonal variances \(\sigma_m^2 > 0\).

    # Returns
        A scalar: the mean over the batch and the feature dimensions.
    """
    features = tf.convert_to_tensor(features)
    labels = tf.cast(labels, tf.int32)
    variance = tf.gather(tf.cast(variances, features.dtype), labels)
    squared = tf.square(features - tf.gather(tf.cast(centres, features.dtype), labels))
    return tf.reduce_mean(squared + squared / variance + tf.math.log(variance))


@utils.register_keras_custom_object
class BayesianKernelLoss(tf.keras.layers.Layer, tf.keras.regularizers.Regularizer):
    r"""The Bayesian kernel loss of a layer, as its `kernel_regularizer`.

    Calling it on a kernel returns \(\frac{\lambda}{2} L_{kernel}\) (see
    `bayesian_kernel_loss`) of the latent weights; Keras adds that to the loss
    wherever the layer's regularisation losses are read. It is a layer only to own
    the learned parameters (\(w, \mu_+, \mu_-, \psi_+, \psi_-\), five scalars, created
    at construction so that they exist before any weights are loaded); it never
    appears in the model's graph, and the conv's forward pass is unchanged. (It is
    also a `Regularizer`, the type Keras serialises in that slot.)

    ```python
    prior = lns_larq.bonn.BayesianKernelLoss(bonn_lambda=1e-2)
    conv = lq.layers.QuantConv2D(
        32, 3, padding="same", pad_values=1.0, use_bias=False,
        input_quantizer="ste_sign", kernel_quantizer="dorefa_sign",
        kernel_constraint="weight_clip", kernel_regularizer=prior,
    )
    conv.build((None, 8, 8, 16))
    prior.initialize(conv.kernel)  # maximum-likelihood start from the latent weights
    ```

    # Arguments
        bonn_lambda: Weight \(\lambda\); the loss added is \(\frac{\lambda}{2}L_{kernel}\).
        bonn_nu: Weight \(\nu\) of the mixture-prior and log-determinant terms.
        min_variance: Floor of the mode variances (see the module docstring).
    """

    def __init__(self, bonn_lambda=DEFAULT_LAMBDA, bonn_nu=DEFAULT_NU, min_variance=MIN_VARIANCE, **kwargs):
        _OPTION["bonn_lambda"].check(bonn_lambda)
        _OPTION["bonn_nu"].check(bonn_nu)
        if not min_variance > 0:
            raise ValueError(f"min_variance must be > 0, got {min_variance!r}.")
        super().__init__(**kwargs)
        self.bonn_lambda = float(bonn_lambda)
        self.bonn_nu = float(bonn_nu)
        self.min_variance = float(min_variance)

        def scalar(name, value):
            return self.add_weight(
                PARAMETER_PREFIX + name, shape=(),
                initializer=tf.keras.initializers.Constant(value),
            )

        # Placeholders until `initialize` sees the kernel (or weights are loaded).
        self.scale_raw = scalar("scale", _softplus_inverse(1.0))
        self.mu_pos_raw = scalar("mu_pos", _softplus_inverse(0.5))
        self.mu_neg_raw = scalar("mu_neg", _softplus_inverse(0.5))
        self.log_var_pos = scalar("log_var_pos", _variance_raw(0.1, self.min_variance))
        self.log_var_neg = scalar("log_var_neg", _variance_raw(0.1, self.min_variance))
        self.built = True

    @property
    def scale(self):
        """\\(w\\), the learned positive scale."""
        return tf.nn.softplus(self.scale_raw)

    @property
    def mu_pos(self):
        return tf.nn.softplus(self.mu_pos_raw)

    @property
    def mu_neg(self):
        return tf.nn.softplus(self.mu_neg_raw)

    @property
    def var_pos(self):
        return self.min_variance + tf.exp(self.log_var_pos)

    @property
    def var_neg(self):
        return self.min_variance + tf.exp(self.log_var_neg)

    def kernel_loss(self, kernel: TensorLike) -> tf.Tensor:
        """\\(L_{kernel}\\) of `kernel` (unweighted); reads the latent weights."""
        latent = getattr(kernel, "latent_variable", kernel)
        return bayesian_kernel_loss(
            tf.convert_to_tensor(latent), self.scale, self.mu_pos, self.mu_neg,
            self.var_pos, self.var_neg, self.bonn_nu,
        )

    def __call__(self, kernel):
        # The regulariser protocol, not a graph layer: Keras calls this on the variable.
        return 0.5 * self.bonn_lambda * self.kernel_loss(kernel)

    def initialize(self, kernel: TensorLike) -> None:
        """Set every parameter to its maximum-likelihood value for `kernel`.

        \\(w = \\sum|x| / \\sum x^2\\) minimises the reconstruction; \\(\\mu_\\pm\\)
        and \\(\\psi_\\pm\\) are the mean magnitude and the variance of each mode. The
        loss then starts at its minimum in these parameters, and training first moves
        the weights, not the prior.
        """
        x = np.asarray(tf.convert_to_tensor(getattr(kernel, "latent_variable", kernel)), np.float64).ravel()
        magnitude = np.abs(x)
        positive = x >= 0
        scale = magnitude.sum() / max(np.square(x).sum(), 1e-12)
        fallback_mu = max(magnitude.mean(), 1e-3)
        for mode, mu_raw, log_var in (
            (magnitude[positive], self.mu_pos_raw, self.log_var_pos),
            (magnitude[~positive], self.mu_neg_raw, self.log_var_neg),
        ):
            mu = max(mode.mean(), 1e-3) if mode.size else fallback_mu
            variance = mode.var() if mode.size > 1 else 0.0
            mu_raw.assign(_softplus_inverse(mu))
            log_var.assign(_variance_raw(variance, self.min_variance))
        self.scale_raw.assign(_softplus_inverse(max(scale, 1e-3)))

    def get_config(self):
        return {
            **super().get_config(),
            "bonn_lambda": self.bonn_lambda,
            "bonn_nu": self.bonn_nu,
            "min_variance": self.min_variance,
        }


def kernel_priors(model: tf.keras.Model) -> list[tuple[tf.keras.layers.Layer, "BayesianKernelLoss"]]:
    """`[(layer, BayesianKernelLoss)]` for every layer of `model` that has one."""
    return [
        (layer, layer.kernel_regularizer)
        for layer in all_layers(model)
        if isinstance(getattr(layer, "kernel_regularizer", None), BayesianKernelLoss)
    ]


def classifier_layer(model: tf.keras.Model, name: str | None = None) -> tf.keras.layers.Dense:
    """The classifier of `model`: the `Dense` layer `name`, else the one named
    `"logits"`, else the last `Dense` layer. BONN's features are its input."""
    dense = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Dense)]
    for wanted in (name, "logits"):
        for layer in dense:
            if wanted is not None and layer.name == wanted:
                return layer
    if name is not None:
        raise ValueError(f"Model {model.name!r} has no Dense layer named {name!r}.")
    if not dense:
        raise ValueError(
            f"Model {model.name!r} has no Dense layer; the Bayesian feature loss needs "
            "the features entering a Dense classifier."
        )
    return dense[-1]


def _class_indices(y, num_classes):
    y = tf.convert_to_tensor(y)
    if y.shape.rank is not None and y.shape.rank >= 2 and y.shape[-1] == num_classes > 1:
        return tf.argmax(y, axis=-1, output_type=tf.int32)  # one-hot labels
    return tf.cast(tf.reshape(y, [-1]), tf.int32)


@utils.register_keras_custom_object
class BONNModel(tf.keras.Model):
    r"""A functional binary network trained with BONN's Bayesian feature loss.

    The model's graph is the given network's, unchanged: `call`, `predict`, saving
    and LCE conversion see the plain binary network. Only `train_step` and
    `test_step` also take the features \(f\) entering the classifier (the input of
    its final `Dense` layer) and add \(\frac{\theta}{2}L_{feature}\) (see
    `bayesian_feature_loss`) with learned class centres \(c_m\) and variances
    \(\sigma_m^2\), weights of this model that no layer of the graph uses. Kernel
    losses come in through the layers' regularisers (`BayesianKernelLoss`).

    Besides the compiled metrics, both steps log the unweighted sums
    `bonn_kernel_loss` \(= \sum_l L^{(l)}_{kernel}\) and `bonn_feature_loss`
    \(= L_{feature}\); `loss` is the full objective. `compile` excludes the BONN
    parameters (names containing `"bonn_"`) from decoupled weight decay: decaying a
    log-variance or a centre towards 0 would bias the prior, not regularise the
    network.

    ```python
    base = lns_larq.models.get("resnet20")
    model = lns_larq.bonn.BONNModel(base.inputs, base.outputs, bonn_theta=0.1)
    ```

    # Arguments
        inputs, outputs: The functional network (one output: the logits).
        bonn_theta: Weight \(\theta\); the loss added is \(\frac{\theta}{2}L_{feature}\).
        classifier: Name of the classifier `Dense` layer (default: see
            `classifier_layer`).
        min_variance: Floor of the feature variances.
    """

    def __init__(self, inputs, outputs, bonn_theta=DEFAULT_THETA, classifier=None,
                 min_variance=MIN_VARIANCE, name=None, **kwargs):
        _OPTION["bonn_theta"].check(bonn_theta)
        if not min_variance > 0:
            raise ValueError(f"min_variance must be > 0, got {min_variance!r}.")
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        if len(self.outputs) != 1:
            raise ValueError(f"BONNModel needs a single logits output, got {len(self.outputs)}.")
        dense = classifier_layer(self, classifier)
        features = dense.input
        if isinstance(features, (list, tuple)) or features.shape.rank != 2:
            raise ValueError(f"The classifier {dense.name!r} must take (batch, D) features.")
        self.bonn_theta = float(bonn_theta)
        self.classifier = dense.name
        self.min_variance = float(min_variance)
        self.num_classes = int(dense.units)
        shape = (self.num_classes, int(features.shape[-1]))
        self.feature_centres = self.add_weight(
            PARAMETER_PREFIX + "feature_centres", shape, initializer="zeros"
        )
        self.feature_log_variances = self.add_weight(
            PARAMETER_PREFIX + "feature_log_variances", shape,
            initializer=tf.keras.initializers.Constant(_variance_raw(1.0, self.min_variance)),
        )
        # The same layers, also returning the features; untracked so that it is not
        # a second path to the layers in checkpoints.
        object.__setattr__(
            self, "_features_and_logits",
            tf.keras.Model(self.inputs, [features, self.outputs[0]], name=f"{self.name}_features"),
        )
        # Untracked too: as attributes, their running sums would become model weights.
        object.__setattr__(self, "kernel_loss_tracker", tf.keras.metrics.Mean("bonn_kernel_loss"))
        object.__setattr__(self, "feature_loss_tracker", tf.keras.metrics.Mean("bonn_feature_loss"))

    @property
    def metrics(self):
        return [*super().metrics, self.kernel_loss_tracker, self.feature_loss_tracker]

    @property
    def feature_variances(self):
        """\\(\\sigma^2\\), `(classes, D)`."""
        return self.min_variance + tf.exp(self.feature_log_variances)

    def features(self, x: TensorLike, training: bool = False) -> tf.Tensor:
        """The features entering the classifier for inputs `x`."""
        return self._features_and_logits(x, training=training)[0]

    def feature_loss(self, features: TensorLike, y: TensorLike) -> tf.Tensor:
        """\\(L_{feature}\\) (unweighted) of `features` with labels `y`."""
        return bayesian_feature_loss(
            features, _class_indices(y, self.num_classes),
            self.feature_centres, self.feature_variances,
        )

    def kernel_loss(self) -> tf.Tensor:
        """\\(\\sum_l L^{(l)}_{kernel}\\) (unweighted) over the binarized layers."""
        losses = [prior.kernel_loss(layer.kernel) for layer, prior in kernel_priors(self)]
        return tf.add_n(losses) if losses else tf.constant(0.0)

    def _step(self, x, y, sample_weight, training):
        features, y_pred = self._features_and_logits(x, training=training)
        feature_loss = self.feature_loss(features, y)
        loss = self.compiled_loss(
            y, y_pred, sample_weight,
            regularization_losses=[*self.losses, 0.5 * self.bonn_theta * feature_loss],
        )
        return loss, y_pred, feature_loss

    def train_step(self, data):
        x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            loss, y_pred, feature_loss = self._step(x, y, sample_weight, training=True)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return self._metrics_result(x, y, y_pred, sample_weight, feature_loss)

    def test_step(self, data):
        x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        _, y_pred, feature_loss = self._step(x, y, sample_weight, training=False)
        return self._metrics_result(x, y, y_pred, sample_weight, feature_loss)

    def _metrics_result(self, x, y, y_pred, sample_weight, feature_loss):
        self.feature_loss_tracker.update_state(feature_loss)
        self.kernel_loss_tracker.update_state(self.kernel_loss())
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def compile(self, optimizer="rmsprop", *args, **kwargs):
        super().compile(optimizer, *args, **kwargs)
        optimizer = self.optimizer
        if getattr(optimizer, "weight_decay", None) and hasattr(optimizer, "exclude_from_weight_decay"):
            names = list(getattr(optimizer, "_exclude_from_weight_decay_names", None) or [])
            if PARAMETER_PREFIX not in names and not getattr(optimizer, "_built", False):
                excluded = list(getattr(optimizer, "_exclude_from_weight_decay", None) or [])
                optimizer.exclude_from_weight_decay(var_names=[*names, PARAMETER_PREFIX])
                optimizer._exclude_from_weight_decay = excluded  # keep the caller's var_list

    def compile_from_config(self, config):
        # Keras does not compile a loaded model whose `compile` is overridden; ours
        # only adds the weight-decay exclusion, so the saved config is replayed as is.
        self.compile(**tf.keras.saving.deserialize_keras_object(config))
        if self.built and isinstance(self.optimizer, tf.keras.optimizers.Optimizer):
            self.optimizer.build(self.trainable_variables)  # so its saved state loads

    def get_config(self):
        network = tf.keras.Model(self.inputs, self.outputs, name=self.name).get_config()
        return {
            **network,
            "bonn_theta": self.bonn_theta,
            "classifier": self.classifier,
            "min_variance": self.min_variance,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        options = {k: config.pop(k) for k in ("bonn_theta", "classifier", "min_variance") if k in config}
        network = tf.keras.Model.from_config(config, custom_objects=custom_objects)
        return cls(network.inputs, network.outputs, name=config.get("name"), **options)


def initialize_state(model: tf.keras.Model, data: Iterable | None = None, max_batches: int = 20) -> None:
    """(Re)start the BONN parameters of `model` from its current weights.

    Every `BayesianKernelLoss` is set to its maximum-likelihood values for its layer's
    latent weights (`BayesianKernelLoss.initialize`). With `data` (batches of
    `(x, y)`), the class centres and variances of a `BONNModel` are set to the mean
    and variance of each class's features (inference mode) over at most
    `max_batches` batches; classes that do not occur keep their values. Call it after
    loading pretrained weights into a BONN model, so that the prior starts where the
    weights are.

    ```python
    lns_larq.training.load_pretrained("runs/base/model.keras", model, base_factory)
    lns_larq.bonn.initialize_state(model, train_data)
    ```
    """
    for layer, prior in kernel_priors(model):
        prior.initialize(layer.kernel)
    if data is None or not isinstance(model, BONNModel):
        return
    shape = tuple(model.feature_centres.shape)
    total, total_sq, count = np.zeros(shape), np.zeros(shape), np.zeros(shape[0])
    for i, batch in enumerate(data):
        if i >= max_batches:
            break
        x, y, _ = tf.keras.utils.unpack_x_y_sample_weight(batch)
        f = model.features(x).numpy().astype(np.float64)
        labels = _class_indices(y, model.num_classes).numpy()
        np.add.at(total, labels, f)
        np.add.at(total_sq, labels, np.square(f))
        np.add.at(count, labels, 1)
    seen = count > 0
    if not seen.any():
        return
    mean = total[seen] / count[seen, None]
    variance = np.maximum(total_sq[seen] / count[seen, None] - np.square(mean), 0.0)
    centres = model.feature_centres.numpy()
    log_variances = model.feature_log_variances.numpy()
    centres[seen] = mean
    log_variances[seen] = np.log(np.maximum(variance - model.min_variance, 1e-3 * model.min_variance))
    model.feature_centres.assign(centres)
    model.feature_log_variances.assign(log_variances)


def bonnify(model: tf.keras.Model, bonn_lambda: float = DEFAULT_LAMBDA, bonn_theta: float = DEFAULT_THETA,
            bonn_nu: float = DEFAULT_NU, keep: Iterable[str] = ()) -> "BONNModel":
    """A copy of `model` trained the BONN way: a `BONNModel` of the same network.

    Every binarized `QuantConv2D` (binary kernel quantizer) gets a
    `BayesianKernelLoss` as its `kernel_regularizer`; quantizers, layers and the graph
    are otherwise unchanged, so the copy computes the same function as `model`. All
    weights are copied; the kernel priors then start at their maximum-likelihood
    values for the copied latent weights, the feature centres at 0 with unit
    variances (`initialize_state` can start them from data). Works on any
    functional or sequential Larq model with a `Dense` classifier.

    ```python
    baseline = lns_larq.models.get("resnet20", quantizer="dorefa")
    model = lns_larq.bonn.bonnify(baseline, bonn_lambda=1e-2, bonn_theta=0.1)
    ```

    # Arguments
        model: A functional or sequential Keras model with Larq layers.
        bonn_lambda: Weight \\(\\lambda\\) of the kernel losses (0: none).
        bonn_theta: Weight \\(\\theta\\) of the feature loss (0: none).
        bonn_nu: Weight \\(\\nu\\) of the prior terms of the kernel loss.
        keep: Names of binarized layers that are not `QuantConv2D`s to leave
            without a kernel loss (otherwise they are an error).

    # Raises
        ValueError: if `model` has no binarized `QuantConv2D` or no `Dense` layer, a
            binarized layer BONN cannot convert is not in `keep`, a
            binarized conv already has a kernel regulariser, or a weight is negative.
    """
    BayesianKernelLoss(bonn_lambda, bonn_nu)  # validate before cloning
    _OPTION["bonn_theta"].check(bonn_theta)
    binarized = [layer for layer in all_layers(model) if is_binarized_conv(layer)]
    if not binarized:
        raise ValueError(
            f"Model {model.name!r} has no binarized QuantConv2D (a QuantConv2D with a "
            "1-bit kernel_quantizer); there is no kernel for BONN's prior."
        )
    check_binarized_layers_convertible(model, "BONN", keep)
    for layer in binarized:
        if layer.kernel_regularizer is not None:
            raise ValueError(
                f"Layer {layer.name!r} already has a kernel_regularizer; BONN's kernel "
                "loss would replace it."
            )
    classifier_layer(model)  # fail before cloning

    def clone(layer):
        config = layer.get_config()
        if is_binarized_conv(layer) and bonn_lambda > 0:
            config["kernel_regularizer"] = BayesianKernelLoss(bonn_lambda, bonn_nu)
        return layer.__class__.from_config(config)

    network = clone_nested(model, clone)
    copy_weights(model, network)
    bonn = BONNModel(network.inputs, network.outputs, bonn_theta=bonn_theta, name=f"{model.name}_bonn")
    initialize_state(bonn)
    return bonn


@register
class BONN(Method):
    """BONN as a training method (`<model>_bonn`): `bonnify` with the options of
    `BONN_OPTIONS`, and before `fit` the prior and class centres start from the loaded
    weights and ten training batches (`initialize_state`)."""

    name = "BONN"
    suffix = "bonn"
    options = BONN_OPTIONS

    def wrap(self, model, **options):
        return bonnify(model, **options)

    def prepare(self, run):
        initialize_state(run.model, run.train, max_batches=10)
