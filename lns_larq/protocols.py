"""The paper's CIFAR-10 ablation (Table 1) as data: its arms, the recipes that train
them, the `train/fit.py` arguments of each run and where each run's folder is.

A campaign (`train/reproduce.py`) trains, for each weight quantizer, a baseline
and every fine-tuning arm on top of it, once per seed, each run in its own folder
`<runs_dir>/<quantizer>/seed<k>/<arm>`.

```python
from lns_larq import protocols

args = protocols.fit_args("short", "lns", "dorefa", seed=0,
                          pretrained=protocols.baseline_dir("runs/short", "dorefa") + "/model.keras")
# ['--model=resnet20_lns', '--quantizer=dorefa', '--seed=0', ..., '--alpha=1.0', '--rho=0.005', ...]
```
"""

import os

__all__ = [
    "ARMS",
    "DEFAULT_ARMS",
    "PROTOCOLS",
    "arm_dir",
    "baseline_dir",
    "fit_args",
    "holdout",
    "sweep_dir",
]

# arm -> (model suffix, fit.py options of the arm); the LNS arms also warm-start.
#   baseline      the pretrained binary network, no fine-tuning
#   finetune      plain fine-tuning of the baseline
#   lns_no_noisy  LNS mapping, alpha = 0 (no noisy supervision while fine-tuning)
#   lns           LNS with the campaign's alpha and rho (the default, ungated mapping)
#   lns_gated     LNS with the gated mapping and Eq. 15 on its output
#   lns_stop_rho, lns_no_noisy_stop_rho: the warm start stopped once 1 - rho of all
#                 binary weights (0.995 at the default rho) agree with their labels
#   lns_alpha_0.1, lns_pretrained_labels, lns_theta_lr_0.1: candidates for why lns
#                 ends below finetune (issue 20): a tenth of the noisy term's weight;
#                 the labels frozen at sign of the pretrained weights instead of the
#                 current ones; the mappings trained at a tenth of the learning rate
#   bonn          BONN's Bayesian kernel and feature losses, fine-tuned likewise
ARMS = {
    "baseline": ("", {}),
    "finetune": ("", {}),
    "lns_no_noisy": ("_lns", {"alpha": 0.0}),
    "lns": ("_lns", {}),
    "lns_gated": ("_lns", {"gated": True, "loss_input": "output"}),
    "lns_stop_rho": ("_lns", {"warmup_agreement": 0.995, "warmup_layer_agreement": 0.0}),
    "lns_no_noisy_stop_rho": ("_lns", {"alpha": 0.0, "warmup_agreement": 0.995, "warmup_layer_agreement": 0.0}),
    "lns_alpha_0.1": ("_lns", {"alpha": 0.1}),
    "lns_pretrained_labels": ("_lns", {"labels": "pretrained"}),
    "lns_theta_lr_0.1": ("_lns", {"theta_lr": 0.1}),
    "bonn": ("_bonn", {}),
}
DEFAULT_ARMS = ("baseline", "finetune", "lns_no_noisy", "lns", "bonn")

# What each protocol runs: the baseline's and the fine-tuning's fit.py options, the
# warm start's epochs and the training images held out to select epochs (every run
# reports test accuracy at the epoch the hold-out selects). `short` is the recipe of
# docs/recipe.md with fine-tuning at a tenth of its learning rate, as the paper
# fine-tunes at a tenth of its baseline's; `medium` fine-tunes three times as long,
# with the paper's schedule shape (x0.1 at 1/4, 1/2 and 3/4); `long` has that shape
# over 28 epochs, the paper's ratio of fine-tuning to baseline epochs (120 / 400 of
# 90 is 27), because `medium` did not move the baseline (docs/results/medium.md); `short_sgd` is the
# first campaign's (docs/results/short_sgd/, no hold-out); `tiny` is for tests.
# The 90-epoch Adam recipe (docs/recipe.md): `short` trains it, `medium` and `long` fine-tune
# the same baseline (its campaign reuses short's with --baselines_dir).
_RECIPE_BASELINE = dict(epochs=90, optimizer="adam", lr=5e-3, lr_schedule="cosine")
PROTOCOLS = {
    "paper": dict(
        baseline=dict(epochs=400, lr=0.1, lr_schedule="cosine"),
        finetune=dict(epochs=120, lr=0.01, lr_schedule="step", lr_boundaries="30,60,90"),
        warmup_epochs=5,
        validation_size=10000,
    ),
    "short": dict(
        baseline=_RECIPE_BASELINE,
        finetune=dict(epochs=4, optimizer="adam", lr=5e-4, lr_schedule="step", lr_boundaries="2,3"),
        warmup_epochs=1,
        validation_size=10000,
    ),
    "medium": dict(
        baseline=_RECIPE_BASELINE,
        finetune=dict(epochs=12, optimizer="adam", lr=5e-4, lr_schedule="step", lr_boundaries="3,6,9"),
        warmup_epochs=1,
        validation_size=10000,
    ),
    "long": dict(
        baseline=_RECIPE_BASELINE,
        finetune=dict(epochs=28, optimizer="adam", lr=5e-4, lr_schedule="step", lr_boundaries="7,14,21"),
        warmup_epochs=1,
        validation_size=10000,
    ),
    "short_sgd": dict(
        baseline=dict(epochs=15, lr=0.1, lr_schedule="cosine"),
        finetune=dict(epochs=4, lr=0.01, lr_schedule="step", lr_boundaries="2,3"),
        warmup_epochs=1,
        validation_size=0,
    ),
    "tiny": dict(
        baseline=dict(epochs=1, lr=0.05, lr_schedule="constant", steps_per_epoch=3),
        finetune=dict(epochs=2, lr=0.01, lr_schedule="step", lr_boundaries="1", steps_per_epoch=3),
        warmup_epochs=1,
        validation_size=200,
        common=dict(train_subset=256, batch_size=32),
        model="resnet8",  # the same code paths at a third of the tracing time
    ),
}


def holdout(protocol: str, validation_size: int | None = None) -> int:
    """Training images held out for selection: `validation_size`, else the protocol's."""
    return PROTOCOLS[protocol]["validation_size"] if validation_size is None else validation_size


def fit_args(protocol: str, arm: str, quantizer: str, seed: int, pretrained: str | None, *,
             dataset: str = "cifar10", data_path: str | None = None, validation_size: int | None = None,
             alpha: float = 1.0, rho: float = 0.005, extra: dict | None = None,
             model: str | None = None) -> list[str]:
    """The `train/fit.py` arguments of one run, `["--name=value", ...]`.

    # Arguments
        protocol: A name of `PROTOCOLS`.
        arm: A name of `ARMS`.
        quantizer: The baseline weight quantizer (`"dorefa"`, `"xnor"`, `"binarynet"`).
        seed: The run's seed.
        pretrained: The baseline model a fine-tuning arm starts from (unused for a baseline).
        dataset: `"cifar10"` or `"digits"`.
        data_path: The CIFAR-10 copy (`--data_path`), None for tensorflow-datasets.
        validation_size: The hold-out, None for the protocol's (see `holdout`).
        alpha, rho: LNS's alpha and symmetric noise rate of the LNS arms.
        extra: Further fit.py options, overriding the arm's (a sweep's point).
        model: The base model (`"resnet20_prelu"`, say), None for the protocol's; an
            LNS or BONN arm trains its `_lns` or `_bonn` variant.
    """
    spec = PROTOCOLS[protocol]
    phase = spec["baseline"] if arm == "baseline" else spec["finetune"]
    suffix, arm_options = ARMS[arm]
    options = dict(model=(model or spec.get("model", "resnet20")) + suffix, quantizer=quantizer, seed=seed,
                   dataset=dataset, batch_size=128, optimizer="sgd", momentum=0.9, weight_decay=0.0, verbose=2)
    options.update(**spec.get("common", {}), **phase)
    if dataset == "cifar10" and data_path:
        options["data_path"] = data_path
    if holdout(protocol, validation_size):
        options["validation_size"] = holdout(protocol, validation_size)
    if arm != "baseline":
        options["pretrained"] = pretrained
    if suffix == "_lns":
        options.update(alpha=alpha, rho=rho, warmup_epochs=spec["warmup_epochs"])
    options.update(**arm_options, **(extra or {}))
    return [f"--{k}={v}" for k, v in options.items()]


def baseline_dir(runs_dir: str, quantizer: str, seed: int = 0, baselines_dir: str | None = None) -> str:
    """The folder of a quantizer's baseline (in `baselines_dir`, if the baselines are
    another campaign's); every arm fine-tunes the seed-0 one."""
    return os.path.join(baselines_dir or runs_dir, quantizer, f"seed{seed}", "baseline")


def arm_dir(runs_dir: str, quantizer: str, seed: int, arm: str) -> str:
    """The folder of one fine-tuning run."""
    return os.path.join(runs_dir, quantizer, f"seed{seed}", arm)


def sweep_dir(runs_dir: str, quantizer: str, seed: int, name: str, value: float, alpha: float = 1.0,
              rho: float = 0.005) -> str:
    """The run of one sweep point (`name` `"alpha"` or `"rho"` at `value`, the other at
    the campaign's `alpha`, `rho`). A point that is an arm's setting is that arm's
    run: alpha = 0 is `lns_no_noisy`, (`alpha`, `rho`) is `lns`."""
    point_alpha = value if name == "alpha" else alpha
    point_rho = value if name == "rho" else rho
    if point_alpha == 0:
        return arm_dir(runs_dir, quantizer, seed, "lns_no_noisy")
    if (point_alpha, point_rho) == (alpha, rho):
        return arm_dir(runs_dir, quantizer, seed, "lns")
    return arm_dir(runs_dir, quantizer, seed, f"lns_{name}{value:g}")
