"""A training run through Keras `fit`: model, data, optimizer, callbacks, resume.

`run(TrainConfig(...))` is what `train/fit.py` calls. A run writes into its output
folder: `best.keras`, `last.keras` (every epoch), `model.keras` (final), `log.csv`,
`tensorboard/`, `metrics.json`, and `backup/` while it trains. Running the same
config again after a crash or kill resumes from the last completed epoch; a run
whose `metrics.json` exists is complete. Logs left without their checkpoint (a
folder copied without `backup/`) would describe a run that starts again from epoch
0, so they are moved to `stale/<n>/` first, not appended to.

`strategy` names a `tf.distribute` strategy (`lns_larq.distribute`): the model is
built and compiled in its scope, `batch_size` is the global batch (Keras splits each
batch over the replicas) and `lr` is used as given, for that global batch (no
scaling with the number of replicas). In a multi-worker run every worker runs the
same config with the same `output_dir` on a shared filesystem; the chief writes
the run's files, `BackupAndRestore` and the checkpoints coordinate themselves.

A method variant (`<model>_lns`, `<model>_bonn`) brings its own hooks
(`lns_larq.methods.Method`): what it needs before `fit` (LNS: the warm start of
its mapping networks, kept in `warmup.weights.h5` and `warmup.json`; BONN: its
prior's state) and its callbacks. Per-layer figures go to `layers.csv`.

`epochs=0` with `pretrained` is an evaluate-only run: `metrics.json` holds the
test metrics of the loaded (and, for LNS, warm-started) model.
"""

import csv
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from lns_larq import callbacks as lns_callbacks
from lns_larq import cpu, data, distribute, imagenet, methods, models
from lns_larq.errors import first_line
from lns_larq.keras_utils import all_layers, build_compiled, copy_weights, is_binarized_conv, load_model
from lns_larq.methods import Run
from lns_larq.quantizers import WEIGHT_QUANTIZERS, scale_kind

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "step", "cosine")
DATASETS = (*data.DATASETS, imagenet.NAME)


class ConfigError(ValueError):
    """An invalid setting or input file, reported before any training starts."""


@dataclasses.dataclass(init=False, repr=False, eq=False)
class TrainConfig:
    """Everything a run needs: the trainer's settings (the fields below) and, as
    attributes alike, every option of every registered method (`lns_larq.methods`:
    LNS's `alpha`, `rho_pos`, ..., `warmup_epochs`; BONN's `bonn_lambda`, ...), at the
    option's default unless given. `train/fit.py`'s flags map onto all of them.

    ```python
    config = TrainConfig(model="resnet20_lns", pretrained="runs/base/model.keras", alpha=1.0, warmup_epochs=1)
    config.rho_pos  # 0.005, LNS's default
    ```

    # Raises
        TypeError: for a setting that is neither a field nor a registered method's option.
    """

    model: str = "resnet20"
    quantizer: str = "dorefa"
    dataset: str = "cifar10"
    data_path: str | None = None
    data_dir: str | None = None
    manual_dir: str | None = None  # imagenet2012: folder of the ILSVRC2012 archives
    epochs: int = 1
    batch_size: int = 128  # global batch, split over the replicas of `strategy`
    strategy: str = "default"
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_boundaries: tuple = ()
    lr_factor: float = 0.1
    output_dir: str = "runs/run"
    seed: int = 0
    pretrained: str | None = None
    steps_per_epoch: int = 0
    train_subset: int = 0
    validation_size: int = 0
    verbose: int = 1
    overwrite: bool = False
    command: str = ""

    def __init__(self, **settings: Any) -> None:
        defaults = {field.name: field.default for field in dataclasses.fields(self)}
        defaults.update({option.name: option.default for _, option in methods.all_options()})
        unknown = sorted(set(settings) - set(defaults))
        if unknown:
            raise TypeError(f"TrainConfig has no setting {', '.join(map(repr, unknown))}; "
                            "settings are its fields and the options of the registered methods.")
        for name, default in defaults.items():
            setattr(self, name, settings.get(name, default))

    def as_dict(self) -> dict:
        """Every setting by name, the methods' options included."""
        return dict(vars(self))

    def __eq__(self, other):
        return type(other) is type(self) and vars(other) == vars(self)

    def __repr__(self):
        return f"TrainConfig({', '.join(f'{name}={value!r}' for name, value in vars(self).items())})"

    def validate(self) -> None:
        """Raise `ConfigError` naming the first invalid setting."""
        try:
            _, method = models.split_name(self.model)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        checks = [
            (self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}"),
            (self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.lr_schedule in LR_SCHEDULES,
             f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"),
            (all(b > 0 for b in self.lr_boundaries),
             f"lr_boundaries must be positive epochs, got {self.lr_boundaries}"),
            (self.lr_factor > 0, f"lr_factor must be > 0, got {self.lr_factor}"),
            (self.quantizer in WEIGHT_QUANTIZERS,
             f"quantizer must be one of {sorted(WEIGHT_QUANTIZERS)}, got {self.quantizer!r}"),
            (self.dataset in DATASETS, f"dataset must be one of {DATASETS}, got {self.dataset!r}"),
            (self.strategy in distribute.STRATEGIES,
             f"strategy must be one of {distribute.STRATEGIES}, got {self.strategy!r}"),
            (self.dataset != imagenet.NAME or not self.data_path,
             "data_path is for CIFAR-10; imagenet2012 reads --data_dir/--manual_dir"),
            (self.dataset != imagenet.NAME or not self.validation_size,
             "validation_size is for CIFAR-10; imagenet2012 validates on its validation split"),
            (self.steps_per_epoch >= 0, f"steps_per_epoch must be >= 0, got {self.steps_per_epoch}"),
            (self.train_subset >= 0, f"train_subset must be >= 0, got {self.train_subset}"),
            (self.validation_size >= 0, f"validation_size must be >= 0, got {self.validation_size}"),
            (self.epochs > 0 or self.pretrained, "epochs=0 evaluates a --pretrained model; give one, or epochs > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        for owner, option in methods.all_options():
            value = getattr(self, option.name)
            try:
                option.check(value)
            except ValueError as e:
                raise ConfigError(str(e)) from None
            if option.exclusive and value != option.default and method != owner.suffix:
                raise ConfigError(f"{option.name} is for {owner.name} models (*_{owner.suffix}), not {self.model!r}")
        if method is not None:
            try:
                models.method(self.model).validate(self)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if self.pretrained and not (
            os.path.isfile(self.pretrained) or os.path.isfile(self.pretrained + ".index")
        ):
            raise ConfigError(f"pretrained {self.pretrained}: no such model, weights file or checkpoint")



def build_model(config: TrainConfig, input_shape: tuple[int, ...], num_classes: int,
                method: bool = True) -> tf.keras.Model:
    """The model `config.model` (its base network when `method` is False)."""
    base, _ = models.split_name(config.model)
    options = dict(num_classes=num_classes, input_shape=input_shape)
    if models.has_methods(base):
        options["quantizer"] = config.quantizer
    wrapper = models.method(config.model)
    if not method or wrapper is None:
        return models.get(base, **options)
    return models.get(config.model, **options, **wrapper.options_from_config(config))


def load_pretrained(path: str, model: tf.keras.Model, base_factory: Callable[[], tf.keras.Model]) -> None:
    """Copy the weights saved at `path` into `model`.

    `path` is a saved model (`.keras`, `.h5`), a weights file (`.weights.h5`) or a
    TensorFlow checkpoint prefix of `model`'s base network. A baseline's weights
    load into its LNS variant (mapping networks keep their initialisation).
    """
    if path.endswith(".keras") or (path.endswith(".h5") and not path.endswith(".weights.h5")):
        try:
            source = load_model(path)
        except ValueError as e:  # one line: "<path>: cannot load the model (<reason>)"
            raise ConfigError(f"pretrained {e}") from None
    else:
        source = base_factory()
        try:
            status = source.load_weights(path)
            if status is not None:
                status.assert_existing_objects_matched()
        except Exception as e:
            raise ConfigError(
                f"pretrained {path}: weights do not match {source.name} ({first_line(e)})"
            ) from None
    source_layers = {layer.name: layer for layer in all_layers(source)}
    for layer in all_layers(model):
        other = source_layers.get(layer.name)
        if layer.weights and other is None:
            raise ConfigError(
                f"pretrained {path}: has no layer {layer.name!r}; it does not match {model.name}"
            )
        if is_binarized_conv(layer) and is_binarized_conv(other):
            mine, theirs = scale_kind(layer.kernel_quantizer), scale_kind(other.kernel_quantizer)
            if mine != theirs:
                raise ConfigError(
                    f"pretrained {path}: layer {layer.name!r} has weight scale {theirs!r}, "
                    f"the model {mine!r} (check --quantizer)"
                )
    try:
        copy_weights(source, model)
    except ValueError as e:
        raise ConfigError(f"pretrained {path}: {e}") from None


def make_optimizer(name: str, lr: float, momentum: float, weight_decay: float) -> tf.keras.optimizers.Optimizer:
    wd = weight_decay or None
    if name == "sgd":
        return tf.keras.optimizers.SGD(lr, momentum=momentum, weight_decay=wd)
    return tf.keras.optimizers.Adam(lr, weight_decay=wd)


def lr_at(config: TrainConfig, epoch: int) -> float:
    """Learning rate of `epoch` (0-based) under the config's schedule."""
    if config.lr_schedule == "step":
        return config.lr * config.lr_factor ** sum(epoch >= b for b in config.lr_boundaries)
    if config.lr_schedule == "cosine":
        return 0.5 * config.lr * (1 + math.cos(math.pi * epoch / max(config.epochs, 1)))
    return config.lr


def _compile(model, optimizer, dataset, ce_weight=1.0, top5=False, train=True):
    """Compile `model` and create its training state now (`build_compiled`: the
    first `fit` or `evaluate` then traces its step once, not twice)."""
    metrics = ["accuracy", tf.keras.metrics.SparseCategoricalCrossentropy(from_logits=True, name="ce")]
    if top5:
        metrics.append(tf.keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy"))
    model.compile(
        optimizer=optimizer,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        loss_weights=[ce_weight],
        metrics=metrics,
    )
    build_compiled(model, dataset, optimizer=train)


def _compiled(model, dataset, top5=False):
    """`model`, compiled for evaluation on `dataset` (a method's hook may evaluate before `fit`)."""
    _compile(model, "sgd", dataset, top5=top5, train=False)
    return model


def _best_so_far(log_path, key="val_accuracy"):
    if not os.path.exists(log_path):
        return None
    with open(log_path) as f:
        values = [float(row[key]) for row in csv.DictReader(f) if row.get(key)]
    return max(values) if values else None


def _selection(log_path, holdout):
    """The epoch the validation figures select, and test accuracy there.

    With a hold-out: `selected_epoch` (1-based) maximises `val_accuracy`,
    `selected_test_accuracy` is `test_accuracy` at that epoch (the honest figure)
    and `best_test_accuracy` the maximum over epochs (test-selected, the paper's
    "best"). Without one, validation *is* the test set: only `best_test_accuracy`.
    """
    if not holdout:
        best = _best_so_far(log_path)
        return {} if best is None else dict(best_test_accuracy=best)
    if not os.path.exists(log_path):
        return {}
    with open(log_path) as f:
        rows = [row for row in csv.DictReader(f) if row.get("val_accuracy") and row.get("test_accuracy")]
    if not rows:
        return {}
    selected = max(range(len(rows)), key=lambda i: float(rows[i]["val_accuracy"]))  # first of ties
    return dict(
        selected_epoch=int(rows[selected]["epoch"]) + 1,
        selected_val_accuracy=float(rows[selected]["val_accuracy"]),
        selected_test_accuracy=float(rows[selected]["test_accuracy"]),
        best_test_accuracy=max(float(row["test_accuracy"]) for row in rows),
    )


class _Elapsed(tf.keras.callbacks.Callback):
    """Keeps the accumulated training wall time of a run across resumes."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.prior = 0.0
        if os.path.exists(path):
            with open(path) as f:
                self.prior = json.load(f)["seconds"]
        self.start = time.time()

    @property
    def seconds(self):
        return self.prior + time.time() - self.start

    def on_epoch_end(self, epoch, logs=None):
        with open(self.path, "w") as f:
            json.dump({"seconds": self.seconds}, f)


def _evaluate(model, dataset):
    results = model.evaluate(dataset, verbose=0, return_dict=True)
    evaluation = {"accuracy": float(results["accuracy"]), "loss": float(results["ce"])}
    if "top5_accuracy" in results:
        evaluation["top5_accuracy"] = float(results["top5_accuracy"])
    return evaluation


def run(config: TrainConfig) -> dict:
    """Train `config.model` and return the metrics written to `metrics.json`.

    The run happens in the scope of the `tf.distribute` strategy `config.strategy`.
    """
    config.validate()
    try:
        strategy = distribute.get_strategy(config.strategy)
    except distribute.StrategyError as e:
        raise ConfigError(str(e)) from None
    # Workers other than the chief write their files to a scratch folder (the
    # run's folder is shared), removed when the run ends; Keras' checkpoint
    # callbacks do the same themselves.
    chief = distribute.is_chief(strategy)
    write_dir = config.output_dir if chief else tempfile.mkdtemp(
        prefix=f"worker{distribute.worker_index(strategy)}_")
    try:
        with strategy.scope():
            return _run(config, write_dir)
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


# What a run appends to while it trains, resumed with the checkpoint in `backup/`
# (fine-tuning) or `warmup.weights.h5` / `backup_warmup/` (the LNS warm start).
_FINE_TUNING_LOGS = ("log.csv", "layers.csv", "elapsed.json", "flip_reference.npz")
_WARM_START_LOGS = ("warmup.json", "warmup_log.csv", os.path.join("warmup", "layers.csv"))


def _set_aside_stale_logs(out):
    """Move the logs of `out` whose checkpoint is gone to `out/stale/<n>/`.

    Without its checkpoint a run starts again from epoch 0 (or from the warm start),
    and appending its rows to the old ones would make a log of two runs, whose
    best epoch and wall time belong to neither. Nothing is deleted. A checkpoint
    folder whose checkpoint is lost (its state file alone) goes with them:
    `BackupAndRestore` would fail on it.
    """
    stale = []
    fine_tuning = lns_callbacks.has_checkpoint(os.path.join(out, "backup"))
    if not fine_tuning:
        stale += [n for n in _FINE_TUNING_LOGS if os.path.exists(os.path.join(out, n))]
    # A fine-tuning checkpoint holds the warm start's result too (the mappings are
    # model weights), so the warm start's logs stay with it.
    warm_started = lns_callbacks.has_checkpoint(os.path.join(out, "backup_warmup"))
    if not (fine_tuning or os.path.exists(os.path.join(out, "warmup.weights.h5")) or warm_started):
        stale += [n for n in _WARM_START_LOGS if os.path.exists(os.path.join(out, n))]
    stale += [n for n, restorable in (("backup", fine_tuning), ("backup_warmup", warm_started))
              if not restorable and any(files for _, _, files in os.walk(os.path.join(out, n)))]
    if not stale:
        return
    n = 1
    while os.path.exists(os.path.join(out, "stale", str(n))):
        n += 1
    folder = os.path.join(out, "stale", str(n))
    for name in stale:
        os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
        shutil.move(os.path.join(out, name), os.path.join(folder, name))
    print(f"{out}: no checkpoint for {', '.join(stale)}; the run starts again and they are kept in {folder}")


def _run(config, write_dir):
    out = config.output_dir
    chief = write_dir == out
    metrics_path = os.path.join(out, "metrics.json")
    if os.path.exists(metrics_path) and not config.overwrite:
        print(f"{out} is a complete run (metrics.json exists); pass overwrite to train again.")
        with open(metrics_path) as f:
            return json.load(f)
    if config.overwrite and chief:
        for name in ("metrics.json", "warmup.weights.h5", *_FINE_TUNING_LOGS, *_WARM_START_LOGS):
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
    os.makedirs(out, exist_ok=True)
    if chief:
        _set_aside_stale_logs(out)
    tf.keras.utils.set_random_seed(config.seed)
    if config.dataset == imagenet.NAME:
        source = imagenet.load(config.data_dir, config.manual_dir)
        train, test = imagenet.pipelines(
            source, config.batch_size, seed=config.seed, train_subset=config.train_subset,
            drop_remainder=config.strategy == "tpu",
        )
        val, input_shape, num_classes = None, source.input_shape, source.num_classes
        train_size = config.train_subset or source.num_examples("train") or 0
    else:
        arrays = data.load(config.dataset, config.data_path, config.data_dir)
        train, val, test = data.pipelines(
            arrays, config.batch_size, config.validation_size, config.train_subset, seed=config.seed
        )
        input_shape, num_classes = arrays.input_shape, arrays.num_classes
        train_size = _train_size(arrays, config)
    top5 = config.dataset == imagenet.NAME
    steps = config.steps_per_epoch or None
    if steps:
        train = train.repeat()
    model = build_model(config, input_shape, num_classes)
    if config.pretrained:
        load_pretrained(
            config.pretrained, model,
            lambda: build_model(config, input_shape, num_classes, method=False),
        )
    method = models.method(config.model)
    metrics = {}
    elapsed = _Elapsed(os.path.join(write_dir, "elapsed.json"))  # a warm start counts
    if method is not None:
        run_info = Run(
            model=model, config=config, train=train, test=test, output_dir=out, write_dir=write_dir,
            steps_per_epoch=steps, sample=next(iter(train))[:2],
            evaluate=lambda m: _evaluate(_compiled(m, test, top5), test),
        )
        report = method.prepare(run_info)
        if report is not None:
            metrics[method.suffix] = report
            print(method.summary(report))

    _compile(model, make_optimizer(config.optimizer, config.lr, config.momentum, config.weight_decay), train,
             top5=top5)
    log_path = os.path.join(out, "log.csv")
    best = tf.keras.callbacks.ModelCheckpoint(
        os.path.join(out, "best.keras"), monitor="val_accuracy", mode="max", save_best_only=True
    )
    previous_best = _best_so_far(log_path)
    if previous_best is not None:
        best.best = previous_best
    callbacks = []
    if any(is_binarized_conv(layer) for layer in all_layers(model)):
        callbacks.append(lns_callbacks.FlipRate(
            reference_path=os.path.join(write_dir, "flip_reference.npz"), layer_log_dir=write_dir))
    if method is not None:
        callbacks += method.callbacks(run_info)
    if val is not None:  # the hold-out selects; the test figures are logged beside it
        callbacks.append(lns_callbacks.TestAccuracy(test))
    callbacks += [
        tf.keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr_at(config, epoch)),
        elapsed,
        tf.keras.callbacks.BackupAndRestore(os.path.join(out, "backup")),
        best,
        tf.keras.callbacks.ModelCheckpoint(os.path.join(out, "last.keras")),
        tf.keras.callbacks.CSVLogger(os.path.join(write_dir, "log.csv"), append=True),
        # write_graph=False: writing the train graph in the first batch's
        # on_train_batch_end is what Keras reported as a slow callback.
        tf.keras.callbacks.TensorBoard(os.path.join(out, "tensorboard"), profile_batch=0, write_graph=False),
        tf.keras.callbacks.TerminateOnNaN(),
    ]
    fit_start = time.time()
    epochs_run = 0
    if config.epochs:  # epochs=0: evaluate the pretrained model only
        history = model.fit(
            train, validation_data=val if val is not None else test, epochs=config.epochs,
            steps_per_epoch=steps, callbacks=callbacks, verbose=config.verbose,
        )
        epochs_run = len(history.epoch)
    fit_seconds = time.time() - fit_start
    images = epochs_run * (steps or math.ceil(train_size / config.batch_size)) * config.batch_size
    test_results = _evaluate(model, test)
    model_path = os.path.join(out, "model.keras")
    model.save(os.path.join(write_dir, "model.keras"))
    metrics.update(
        model=config.model,
        test_accuracy=test_results["accuracy"],
        test_loss=test_results["loss"],
        best_val_accuracy=_best_so_far(log_path),
        validation="holdout" if val is not None else "test",
        **_selection(os.path.join(write_dir, "log.csv"), holdout=val is not None),
        epochs=config.epochs,
        epochs_this_invocation=epochs_run,
        wall_time_s=elapsed.seconds,
        cpu=cpu.describe(),  # what the wall time was measured on
        cores=sorted(os.sched_getaffinity(0)),  # which of them (a campaign's --jobs pins runs)
        train_images_per_second=images / fit_seconds if epochs_run else None,
        command=config.command,
        config=config.as_dict(),
        model_path=model_path,
    )
    if "top5_accuracy" in test_results:
        metrics["test_top5_accuracy"] = test_results["top5_accuracy"]
    rows = []
    if os.path.exists(os.path.join(write_dir, "log.csv")):
        with open(os.path.join(write_dir, "log.csv")) as f:
            rows = list(csv.DictReader(f))
    if rows and "flip_rate" in rows[-1]:
        metrics["final_flip_rate"] = float(rows[-1]["flip_rate"])
        metrics["final_flip_rate_total"] = float(rows[-1]["flip_rate_total"])
    with open(os.path.join(write_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, default=_jsonable)
    return metrics


def _train_size(arrays, config):
    n = len(arrays.x_train) - config.validation_size
    return min(n, config.train_subset) if config.train_subset else n


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)
