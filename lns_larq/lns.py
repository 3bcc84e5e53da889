"""LNS on a Larq model: `lnsify`, the warm start of the mappings, their monitor
(`LNSMonitor`), and `LNS`, the training method that `<model>_lns` and `train/fit.py` use."""

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import larq as lq
import tensorflow as tf

from lns_larq.callbacks import LayerLog, has_checkpoint
from lns_larq.keras_utils import (
    all_layers,
    build_compiled,
    check_binarized_layers_convertible,
    clone_nested,
    copy_weights,
    is_binarized_conv,
)
from lns_larq.methods import Method, Option, register
from lns_larq.quantizers import LNS_OPTIONS, LNSQuantizer, lns_layers, scale_kind

__all__ = [
    "FINE_TUNING_OPTIONS",
    "LNS",
    "LNSMonitor",
    "MappingLearningRate",
    "StopAtAgreement",
    "WARM_START_AGREEMENT",
    "WARM_START_LAYER_AGREEMENT",
    "WARM_START_OPTIONS",
    "agreement",
    "freeze_labels",
    "labels_as_weights",
    "layer_agreement",
    "lns_layer_state",
    "lns_state",
    "lnsify",
    "mapping_only",
    "supervision_weight",
    "warm_start",
]

_logger = logging.getLogger(__name__)

def lnsify(model: tf.keras.Model, keep: Iterable[str] = (), **quantizer_options: Any) -> tf.keras.Model:
    """A copy of `model` with every binarized conv's kernel quantizer an `LNSQuantizer`.

    Each replacement keeps the scale kind of the quantizer it replaces (DoReFa:
    layer, XNOR/magnitude-aware: channel, plain sign: none). All weights of `model`
    are copied and the noisy labels frozen (`freeze_labels`); the mapping networks
    start from their random initialisation, so train them with `warm_start` before
    fine-tuning (with `gated=True` the untrained mapping already computes
    `sign(W)`). Layers that are not binarized are left alone. Works on any
    functional or sequential Larq model, nested models and larq-zoo
    architectures included.

    ```python
    baseline = lns_larq.models.get("resnet20", quantizer="dorefa")
    model = lns_larq.lnsify(baseline, alpha=1.0, rho_pos=0.005)
    ```

    # Arguments
        model: A functional or sequential Keras model with Larq layers.
        keep: Names of binarized layers that are not `QuantConv2D`s (a binary
            `QuantDense`, a depthwise conv) to leave with their own quantizer.
        **quantizer_options: LNS's options, `LNSQuantizer` arguments except `scale`
            (`lns_larq.quantizers.LNS_OPTIONS`: mapping, alpha, rho_pos, rho_neg,
            bound, width, decay, gated, loss_input, labels).

    # Raises
        ValueError: if `model` has no binarized `QuantConv2D`, has a binarized layer
            LNS cannot map that is not in `keep` (named in the message), or an
            unknown option is given.
    """
    valid = {option.name for option in LNS_OPTIONS}
    unknown = set(quantizer_options) - valid
    if unknown:
        raise ValueError(f"Unknown LNS options {sorted(unknown)}; valid: {sorted(valid)}.")
    LNSQuantizer(**quantizer_options)  # validate before cloning
    if not any(is_binarized_conv(layer) for layer in all_layers(model)):
        raise ValueError(
            f"Model {model.name!r} has no binarized QuantConv2D (a QuantConv2D with a "
            "1-bit kernel_quantizer); there is nothing for LNS to map."
        )
    check_binarized_layers_convertible(model, "LNS", keep)

    def clone(layer):
        config = layer.get_config()
        if is_binarized_conv(layer):
            config["kernel_quantizer"] = LNSQuantizer(
                scale=scale_kind(layer.kernel_quantizer), **quantizer_options
            )
        return layer.__class__.from_config(config)

    new_model = clone_nested(model, clone)
    new_model._name = f"{model.name}_lns"
    copy_weights(model, new_model)
    freeze_labels(new_model)
    return new_model


def freeze_labels(model: tf.keras.Model) -> None:
    """Freeze `sign(W)` of the current latent weights as the noisy labels of every
    LNS layer with `labels="pretrained"` (the others recompute them every step)."""
    for layer in lns_layers(model):
        layer.kernel_quantizer.freeze_labels(layer.kernel.latent_variable)


@contextlib.contextmanager
def mapping_only(model: tf.keras.Model) -> Iterator[tf.keras.Model]:
    """Within the block, only the LNS mapping networks of `model` are trainable.

    The warm start of paper Sec. 4.1: the mapping networks learn while every other
    weight (latent kernels included) is frozen and batch normalisation runs in
    inference mode. Compile inside the block; the previous trainability is restored
    on exit.

    ```python
    with lns_larq.lns.mapping_only(model):
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(data, epochs=5)
    ```
    """
    mapped = lns_layers(model)
    if not mapped:
        raise ValueError(f"Model {model.name!r} has no LNS layer to warm-start.")
    layers = list(all_layers(model))
    saved = [(layer, layer.trainable) for layer in layers]
    moved = []
    try:
        for layer in layers:
            layer.trainable = any(layer is m for m in mapped)
        for layer in mapped:
            # Keras freezes whole layers only, so the latent kernel moves to the
            # non-trainable list and only the quantizer's mapping weights train.
            kernel = layer.kernel
            _set_weight_lists(
                layer,
                [w for w in layer._trainable_weights if w is not kernel],
                [*layer._non_trainable_weights, kernel],
            )
            moved.append((layer, kernel))
        yield model
    finally:
        for layer, kernel in moved:
            _set_weight_lists(
                layer,
                [kernel, *layer._trainable_weights],
                [w for w in layer._non_trainable_weights if w is not kernel],
            )
        for layer, trainable in saved:
            layer.trainable = trainable


def _set_weight_lists(layer, trainable, non_trainable):
    # Keras' __setattr__ would track the variables in the lists as new weights
    # (re-appending them to `_trainable_weights`); these lists are plain lists.
    object.__setattr__(layer, "_trainable_weights", trainable)
    object.__setattr__(layer, "_non_trainable_weights", non_trainable)


@contextlib.contextmanager
def _quantizers_set(model, name, value):
    """Within the block, attribute `name` of every LNS quantizer of `model` is `value`."""
    quantizers = [layer.kernel_quantizer for layer in lns_layers(model)]
    saved = [getattr(q, name) for q in quantizers]
    try:
        for q in quantizers:
            setattr(q, name, value)
        yield model
    finally:
        for q, old in zip(quantizers, saved):
            setattr(q, name, old)


def labels_as_weights(model: tf.keras.Model) -> AbstractContextManager[tf.keras.Model]:
    """Within the block, every LNS layer of `model` binarizes to its noisy labels
    instead of the mapping's prediction: with `labels="pretrained"`, or before
    fine-tuning, that is the pretrained binary network. Compile inside the block."""
    return _quantizers_set(model, "use_labels", True)


def supervision_weight(model: tf.keras.Model, alpha: float) -> AbstractContextManager[tf.keras.Model]:
    """Within the block, every LNS layer of `model` weights its auxiliary loss by
    `alpha`. Compile inside the block: the loss is traced into the train step."""
    return _quantizers_set(model, "alpha", float(alpha))


def _agreement_counts(model):
    """{layer name: (binary weights equal to their noisy labels, weights)}."""
    counts = {}
    for layer in lns_layers(model):
        q = layer.kernel_quantizer
        latent = tf.convert_to_tensor(layer.kernel.latent_variable)
        same = lq.math.sign(q.predict_continuous(latent)) == q.noisy_labels(latent)
        counts[layer.name] = (int(tf.math.count_nonzero(same)), int(tf.size(latent)))
    return counts


def _overall(counts):
    return sum(a for a, _ in counts.values()) / sum(n for _, n in counts.values())


def layer_agreement(model: tf.keras.Model) -> dict[str, float]:
    """{layer name: fraction of its mapped binary weights equal to their noisy labels}."""
    return {name: agree / size for name, (agree, size) in _agreement_counts(model).items()}


def agreement(model: tf.keras.Model) -> float:
    """Fraction of the mapped binary weights of `model` equal to their noisy labels."""
    return _overall(_agreement_counts(model))


# The warm start's default stop: every binary weight agrees with its label, so the
# mapped network is the pretrained one. Why exact (docs/design.md): from the
# shipped resnet20, a stop at 0.9999 overall and 0.999 per layer left 14 of
# 270,000 weights wrong and changed 8 % of the test predictions; 30 more Adam
# steps reached full agreement (about 100-130 steps in all) and changed none. The
# earlier stop at 1 - rho (0.995 overall) left 3 % of the stride-2 convs' weights
# wrong and cost 0.5-2.4 points of test accuracy.
WARM_START_AGREEMENT = 1.0
WARM_START_LAYER_AGREEMENT = 1.0


class StopAtAgreement(tf.keras.callbacks.Callback):
    """Stops training once the mapped binary weights agree with their noisy labels
    on at least `target` of all weights and `layer_target` of every layer's,
    checked every `every` batches.

    The default warm start stops at full agreement in every layer: the mapped
    network is then the pretrained one. The other use is the stop
    at 1 - rho (`layer_target=0`): under the noise model of paper Eqs. 8-9 a
    fraction rho of the labels is wrong, so a mapping that has learnt the clean
    weights agrees with about 1 - rho of them (docs/design.md).

    # Arguments
        target: Fraction of all mapped binary weights that must agree.
        layer_target: Fraction of each layer's weights that must agree (0: none).
        every: Check every this many batches.
    """

    def __init__(self, target, layer_target=0.0, every=10):
        super().__init__()
        self.target = target
        self.layer_target = layer_target
        self.every = every
        self.steps = 0
        self.stopped_at = None  # the step count at the stop

    def lagging(self) -> dict[str, float]:
        """{layer: agreement} of the layers below `layer_target`, plus `"overall"`
        if all weights together are below `target`; empty once both are met."""
        counts = _agreement_counts(self.model)
        lag = {name: a / n for name, (a, n) in counts.items() if a / n < self.layer_target}
        if _overall(counts) < self.target:
            lag["overall"] = _overall(counts)
        return lag

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps % self.every == 0 and not self.lagging():
            self.stopped_at = self.steps
            self.model.stop_training = True


def warm_start(model: tf.keras.Model, data: tf.data.Dataset, epochs: int = 1, steps_per_epoch: int | None = None,
               optimizer: tf.keras.optimizers.Optimizer | None = None, alpha: float = 1.0,
               cross_entropy: bool = False, stop_agreement: float = WARM_START_AGREEMENT,
               layer_agreement: float = WARM_START_LAYER_AGREEMENT, callbacks: Iterable = (),
               verbose: int = 1, warn: bool = True) -> "StopAtAgreement | None":
    """Train the random mapping networks of `model` alone (paper Sec. 4.1).

    All other weights are frozen (`mapping_only`). The loss is the noisy-supervision
    loss at weight `alpha`, whatever alpha fine-tuning uses, so that even the
    alpha = 0 ablation starts from a mapping that reproduces the pretrained binary
    weights; plus the cross-entropy when `cross_entropy` (the paper's Eq. 21 with
    the other weights fixed). Without it, the warm start learns nothing from the
    data (batch norm is frozen too), so it adds no training epoch to a comparison.

    It stops once the mapping agrees with the labels on `stop_agreement` of all
    binary weights and `layer_agreement` of every layer's (`StopAtAgreement`; by
    default, until the mapped network reproduces the pretrained one), or after
    `epochs * steps_per_epoch` steps, the cap. At the cap short of the targets, a
    one-line warning names the layers that missed them (`warn=False` leaves that
    to the caller: a training run says it in its warm-start summary line). `stop_agreement=0.995,
    layer_agreement=0` is the stop at 1 - rho; `stop_agreement=0` trains to the cap.
    `optimizer` defaults to Adam at 1e-3. Returns the `StopAtAgreement` callback
    (its `stopped_at` step, or None at the cap) or None without a stop; the model
    is compiled for the warm start afterwards, so compile it again for fine-tuning.

    ```python
    model = lns_larq.lnsify(baseline)
    lns_larq.lns.warm_start(model, train_data, epochs=1)
    ```
    """
    optimizer = optimizer or tf.keras.optimizers.Adam(1e-3)
    if not cross_entropy:
        # The noisy loss depends on the weights only, and batch norm is frozen: a
        # fixed batch of 8 images gives the same updates as the real batches, at a
        # fraction of the cost.
        steps_per_epoch = steps_per_epoch or int(data.cardinality())
        if steps_per_epoch <= 0:
            raise ValueError("warm_start needs steps_per_epoch for a dataset of unknown length.")
        data = data.unbatch().take(8).batch(8).cache().repeat()
    stop = StopAtAgreement(stop_agreement, layer_agreement or 0.0) if stop_agreement else None
    with mapping_only(model), supervision_weight(model, alpha):
        model.compile(
            optimizer=optimizer,
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            loss_weights=[1.0 if cross_entropy else 0.0],
            metrics=["accuracy"],
        )
        build_compiled(model, data)  # over the mappings' weights alone: only they train here
        model.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                  callbacks=[*([stop] if stop else []), *callbacks], verbose=verbose)
    if stop is not None and stop.stopped_at is None:
        lagging = stop.lagging()
        if not lagging:  # reached on the last steps, between two checks
            stop.stopped_at = stop.steps
        elif warn:
            lagging = ", ".join(f"{name} {value:.4f}" for name, value in lagging.items())
            _logger.warning(
                f"warm start: the step cap ({stop.steps} steps) came before agreement "
                f"{stop.target:g} overall and {stop.layer_target:g} per layer; below it: "
                f"{lagging}. Give it more steps (warmup_epochs) or a larger warmup_lr.")
    return stop


class LNSMonitor(tf.keras.callbacks.Callback):
    """After every epoch, the state of the model's LNS mappings.

    Into the epoch logs (the progress line, history, CSV): `aux_loss`, the summed
    auxiliary loss \\(\\alpha \\sum_i \\tilde\\ell_i\\) (it depends on the weights
    only), and `agreement`, the fraction of mapped binary weights equal to their
    noisy labels. Per layer (`layer_figures`, and `layer_log_dir`'s `LayerLog`):

    - `disagreement`, `saturated` (\\(|\\hat q| > 0.99\\)) and `bound_derivative`
      (mean \\(b'(z)\\)), see `LNSQuantizer.state`;
    - `grad_ratio`, with a `sample` batch `(x, y)`: the norm of the auxiliary loss's
      gradient on the layer's mapping parameters \\(\\theta\\) over that of the
      cross-entropy on the sample (model in inference mode, so batch-norm
      statistics are untouched). The auxiliary term uses the layer's alpha; with
      alpha = 0 the ratio is 0.

    ```python
    model.fit(data, epochs=3, callbacks=[lns_larq.lns.LNSMonitor(sample=(x, y))])
    ```
    """

    def __init__(self, sample=None, layer_log_dir=None):
        super().__init__()
        self.sample = sample
        self.layer_log = LayerLog(layer_log_dir) if layer_log_dir else None
        self.layer_figures = {}

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(lns_state(self.model))
        self.layer_figures = lns_layer_state(self.model, self.sample)
        if self.layer_log:
            self.layer_log.write(epoch, self.layer_figures)


class MappingLearningRate(tf.keras.callbacks.Callback):
    r"""A learning rate for the mapping networks \(\theta\) that is `factor` times the
    other weights', in Keras `fit`.

    Around every training step it scales the change of \(\theta\):
    \(\theta_t = \theta_{t-1} + \text{factor}\,(\theta'_t - \theta_{t-1})\), where
    \(\theta'_t\) is the optimizer's step. For optimizers whose step is linear in the
    learning rate, given the gradients and their own state (SGD with or without
    momentum, Adam, decoupled weight decay), this is exactly training \(\theta\) at
    `factor` times the learning rate, and it keeps the one optimizer, its schedule
    and its checkpoints. The other weights are untouched. It needs one step per
    batch callback: compile with `steps_per_execution=1` (Keras' default).

    ```python
    model.fit(data, epochs=4, callbacks=[lns_larq.lns.MappingLearningRate(0.1)])
    ```

    # Arguments
        factor: The mapping networks' learning rate over the optimizer's (> 0).
    """

    def __init__(self, factor: float):
        super().__init__()
        if not factor > 0:
            raise ValueError(f"factor must be > 0, got {factor}.")
        self.factor = float(factor)
        self._before = None

    def on_train_begin(self, logs=None):
        theta = [w for layer in lns_layers(self.model) for w in layer.kernel_quantizer.network.trainable_weights]
        factor = self.factor

        # Functions of this model's theta, holding no state of their own: the
        # weights before a step are plain tensors, so nothing is created per trace.
        @tf.function
        def remember():
            return [tf.identity(w) for w in theta]

        @tf.function
        def scale(before):
            for b, w in zip(before, theta):
                w.assign(b + factor * (w - b))

        self._remember, self._scale = remember, scale
        # Trace both now (a no-op pair), not in the first steps, which Keras times
        # to warn about slow callbacks.
        self._scale(self._remember())

    def on_train_batch_begin(self, batch, logs=None):
        self._before = self._remember()

    def on_train_batch_end(self, batch, logs=None):
        self._scale(self._before)


def lns_layer_state(model: tf.keras.Model, sample: tuple | None = None) -> dict[str, dict[str, float]]:
    """`{figure: {layer: value}}` of a model's LNS layers (see `LNSMonitor`)."""
    figures = {}
    layers = lns_layers(model)
    for layer in layers:
        latent = tf.convert_to_tensor(layer.kernel.latent_variable)
        for key, value in layer.kernel_quantizer.state(latent).items():
            figures.setdefault(key, {})[layer.name] = value
    if sample is not None:
        ratios = _grad_ratios(model, layers, sample)
        figures["grad_ratio"] = {layer.name: float(r) for layer, r in zip(layers, ratios)}
    return figures


def _grad_ratios(model, layers, sample):
    """Per layer, |grad_theta alpha l~| / |grad_theta CE| on `sample` (see `LNSMonitor`)."""
    x, y = sample
    # Under a strategy, fit's callbacks run in cross-replica context, where the model
    # reads each mirrored variable's first component; the tape can only differentiate
    # with respect to those components (the variable itself has no handle there).
    local = tf.distribute.get_strategy().experimental_local_results
    thetas = [[local(w)[0] for w in layer.kernel_quantizer.network.trainable_weights] for layer in layers]
    with tf.GradientTape(persistent=True) as tape:
        logits = model(x, training=False)
        ce = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        aux = [layer.kernel_quantizer.auxiliary_loss(tf.convert_to_tensor(layer.kernel.latent_variable))
               for layer in layers]
    # One backward pass of the cross-entropy for every layer's theta, not one per
    # layer (18 eager passes through ResNet-20: 8.5 s at each epoch's end instead of
    # 1.1-1.6 s, the same ratios to the bit; AMD EPYC Zen 4, oneDNN on, beside a
    # campaign); each auxiliary loss depends on its own layer alone.
    g_ce_all = tape.gradient(ce, thetas)
    ratios = []
    for theta, g_ce, aux_loss in zip(thetas, g_ce_all, aux):
        g_aux = tf.linalg.global_norm(tape.gradient(aux_loss, theta))
        ratios.append(float(g_aux / (tf.linalg.global_norm(g_ce) + 1e-30)))
    del tape
    return ratios


def lns_state(model: tf.keras.Model) -> dict[str, float]:
    """`{"aux_loss": ..., "agreement": ...}` of a model's LNS layers (see LNSMonitor)."""
    aux = sum(
        float(layer.kernel_quantizer.auxiliary_loss(tf.convert_to_tensor(layer.kernel.latent_variable)))
        for layer in lns_layers(model)
    )
    return {"aux_loss": aux, "agreement": agreement(model)}


# The settings of the warm start, which `LNS.prepare` runs.
WARM_START_OPTIONS = (
    Option("warmup_epochs", 0, "Epochs training only the mapping networks before fine-tuning (the warm start's "
           "step cap; 0: no warm start).", lower=0, wrap=False, exclusive=True),
    Option("warmup_lr", 1e-3, "Adam learning rate of the warm start.", above=0, wrap=False),
    Option("warmup_objective", "noisy", "Warm-start loss: full (cross-entropy + warmup_alpha * aux) or noisy "
           "(warmup_alpha * aux only).", choices=("noisy", "full"), wrap=False),
    Option("warmup_alpha", 1.0, "Weight of the noisy-supervision loss in the warm start (also when alpha is 0).",
           lower=0, wrap=False),
    Option("warmup_agreement", WARM_START_AGREEMENT, "Stop the warm start once this fraction of all binary "
           "weights agrees with the noisy labels, and warmup_layer_agreement of every layer's (0: never; 1 - rho, "
           "e.g. 0.995 with warmup_layer_agreement 0: the stop the controlled task rewards).",
           lower=0, upper=1, wrap=False),
    Option("warmup_layer_agreement", WARM_START_LAYER_AGREEMENT, "The agreement every LNS layer must reach "
           "before the warm start stops (0: no per-layer condition).", lower=0, upper=1, wrap=False),
)

# The settings of LNS fine-tuning beyond the quantizer's.
FINE_TUNING_OPTIONS = (
    Option("theta_lr", 1.0, "Fine-tuning learning rate of the mapping networks (theta) as a multiple of the "
           "other weights' (MappingLearningRate).", above=0, wrap=False),
)


@register
class LNS(Method):
    """LNS as a training method (`<model>_lns`).

    - options: LNS's (`LNS_OPTIONS`, `wrap`'s), the warm start's
      (`WARM_START_OPTIONS`) and fine-tuning's (`FINE_TUNING_OPTIONS`); the flag
      `--rho` sets both noise rates.
    - `wrap`: `lnsify` with the config's LNS options.
    - `prepare`: freezes the noisy labels of the loaded weights, then warm-starts the
      random mappings (`warm_start`) for `warmup_epochs`, Adam at `warmup_lr`, on the
      noisy loss at `warmup_alpha` (plus the cross-entropy with
      `warmup_objective="full"`), stopping once the agreement with the labels reaches
      `warmup_agreement` overall and `warmup_layer_agreement` in every layer (by
      default, once the mapped network reproduces the pretrained one). Its report
      (agreement, per-layer disagreement, test accuracy before and after) goes to
      `warmup.json` and `metrics.json`; the mapping weights to `warmup.weights.h5`, so
      a resumed run skips the warm start.
    - `callbacks`: `LNSMonitor`, its per-layer figures in `layers.csv`; and
      `MappingLearningRate` unless `theta_lr` is 1.
    """

    name = "LNS"
    suffix = "lns"
    options = (*LNS_OPTIONS, *WARM_START_OPTIONS, *FINE_TUNING_OPTIONS)
    shorthands = (Option("rho", 0.005, "Symmetric noise rate: rho_pos = rho_neg = rho.", lower=0),)

    def wrap(self, model, **options):
        return lnsify(model, **options)

    def validate(self, config):
        LNSQuantizer(**self.options_from_config(config))

    def prepare(self, run):
        model, config = run.model, run.config
        freeze_labels(model)  # the pretrained weights are loaded now
        if not config.warmup_epochs:
            return None
        weights_path = os.path.join(run.output_dir, "warmup.weights.h5")
        report_path = os.path.join(run.output_dir, "warmup.json")
        if os.path.exists(weights_path):  # resumed run: the warm start is done
            model.load_weights(weights_path)
            with open(report_path) as f:
                return json.load(f)
        if os.path.exists(report_path) and has_checkpoint(os.path.join(run.output_dir, "backup")):
            # Resumed in fine-tuning: its checkpoint (BackupAndRestore) restores every
            # weight, mappings included, so it alone resumes the run; a campaign commits
            # it without warmup.weights.h5 (campaigns/commit_checkpoints.sh).
            with open(report_path) as f:
                return json.load(f)
        with labels_as_weights(model):
            before = run.evaluate(model)
        stop = warm_start(
            model, run.train, epochs=config.warmup_epochs, steps_per_epoch=run.steps_per_epoch,
            optimizer=tf.keras.optimizers.Adam(config.warmup_lr), alpha=config.warmup_alpha,
            cross_entropy=config.warmup_objective == "full", verbose=config.verbose, warn=False,
            stop_agreement=config.warmup_agreement, layer_agreement=config.warmup_layer_agreement,
            callbacks=[
                LNSMonitor(layer_log_dir=os.path.join(run.write_dir, "warmup")),
                tf.keras.callbacks.BackupAndRestore(os.path.join(run.output_dir, "backup_warmup")),
                tf.keras.callbacks.CSVLogger(os.path.join(run.write_dir, "warmup_log.csv"), append=True),
                tf.keras.callbacks.TerminateOnNaN(),
            ],
        )
        after = run.evaluate(model)
        report = {
            "agreement": agreement(model),
            "disagreement_per_layer": lns_layer_state(model)["disagreement"],
            "labels_test_accuracy": before["accuracy"],
            "warmup_test_accuracy": after["accuracy"],
            "accuracy_change": after["accuracy"] - before["accuracy"],
            "epochs": config.warmup_epochs,
            "stop_agreement": config.warmup_agreement,
            "stop_layer_agreement": config.warmup_layer_agreement,
            "stopped_at_step": stop.stopped_at if stop else None,
            "objective": config.warmup_objective,
        }
        with open(os.path.join(run.write_dir, "warmup.json"), "w") as f:
            json.dump(report, f, indent=2)
        model.save_weights(os.path.join(run.write_dir, "warmup.weights.h5"))
        return report

    def callbacks(self, run):
        monitor = LNSMonitor(sample=run.sample, layer_log_dir=run.write_dir)
        if run.config.theta_lr == 1:
            return [monitor]
        return [monitor, MappingLearningRate(run.config.theta_lr)]

    def summary(self, report: dict) -> str:
        """The warm start in one line: agreement, the stop, test accuracy before and
        after, and the layers below the per-layer target (the rest is in warmup.json)."""
        target = report.get("stop_layer_agreement") or 0.0
        lagging = [f"{name} {1 - d:.4f}" for name, d in report["disagreement_per_layer"].items() if 1 - d < target]
        step = report.get("stopped_at_step")
        stop = f"stopped at step {step}" if step else "ran to its step cap"
        if not step and report.get("stop_agreement"):
            stop += (f" before agreement {report['stop_agreement']:g} overall and {target:g} per layer: "
                     "give it more steps (warmup_epochs) or a larger warmup_lr")
        line = (f"warm start: {100 * report['agreement']:.3f} % of the binary weights agree with their labels "
                f"({stop}); test accuracy {100 * report['labels_test_accuracy']:.2f} % at the labels, "
                f"{100 * report['warmup_test_accuracy']:.2f} % after")
        if lagging:
            line += f"; below {target:g}: {', '.join(lagging)}"
        return line + " (all figures: warmup.json)"
