"""The report of a campaign (`train/reproduce.py`): its runs' figures, tables and plots.

- `run_row`: one complete run's figures, from its `metrics.json` and `log.csv`;
- `results_table`: `results.md`, one row per (quantizer, arm): test accuracy as
  mean ± std over seeds, and each arm's paired difference to `finetune` (same seed,
  same baseline) with its 95 % t-interval (`lns_larq.stats.t_interval`);
- `paper_table`: the `paper` protocol's Table 1 beside the paper's own (Han et al.,
  2020, Table 1: ResNet-20, DoReFa, CIFAR-10), both ways;
- `regime_table`: where each arm starts and ends (training cross-entropy, training,
  hold-out and test accuracy), the regime the paper's Fig. 3 describes;
- `paper_observations`: the paper's four observations on its Fig. 3, each measured
  here, paired by seed, with a verdict;
- `write_results`: `results.csv` (one row per run) and `results.md`;
- `baseline_comparison`: the arms' paired differences to `finetune` from this
  campaign's baseline and from another campaign's (`read_results_csv`), and the
  difference between the two with Welch's 95 % interval (`lns_larq.stats.welch_interval`):
  does an arm's gain depend on the baseline it fine-tunes?
- `sweep_csv`, `sweep_figure`: an alpha or rho sweep's points;
- `curves_figure` (the paper's Fig. 3 analogue) and `flip_heatmap`.

Accuracies are fractions in the rows and the CSV, percentages in the tables and plots.

```python
from lns_larq import report

folders = {("dorefa", "finetune"): ["runs/short/dorefa/seed0/finetune"]}
rows = report.write_results(folders, "runs/short/results", root=".", protocol="short",
                            data="CIFAR-10 (JPEG q75 copy)", holdout=10000)
```
"""

import csv
import itertools
import json
import math
import os

from lns_larq.protocols import PROTOCOLS
from lns_larq.stats import mean_std, t_interval, welch_interval

__all__ = [
    "baseline_comparison",
    "curves_figure",
    "data_label",
    "flip_heatmap",
    "paired_differences",
    "paper_observations",
    "paper_table",
    "read_results_csv",
    "read_run",
    "regime_table",
    "results_table",
    "run_row",
    "seeds_label",
    "sweep_csv",
    "sweep_figure",
    "write_results",
]


def data_label(dataset: str, data_path: str | None) -> str:
    """The data of a campaign, as tables and figure titles name it."""
    if dataset != "cifar10":
        return dataset
    return "CIFAR-10 (JPEG q75 copy)" if data_path else "CIFAR-10 (tensorflow-datasets)"


def seeds_label(n: int) -> str:
    """'1 seed', '3 seeds': for legends and printed summaries."""
    return f"{n} seed{'' if n == 1 else 's'}"


def read_run(out: str) -> tuple[dict, list[dict]]:
    """`metrics.json` and the per-epoch rows of `log.csv` of a complete run."""
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(out, "log.csv")) as f:
        rows = list(csv.DictReader(f))
    return metrics, rows


def run_row(out: str, root: str, last_epoch: bool = False) -> dict:
    """One run's figures, accuracies as fractions; `run` is its folder relative to `root`.

    `accuracy` is the run's headline: test accuracy at the epoch the hold-out
    selects, or the last epoch's for a run without a hold-out or with
    `last_epoch` (baselines: their cosine schedule ends at a learning rate of 0,
    and the arms fine-tune that last epoch's model).
    """
    metrics, log = read_run(out)
    lns = metrics.get("lns") or {}
    selected = None if last_epoch else metrics.get("selected_test_accuracy")
    return dict(
        seed=metrics["config"]["seed"],
        accuracy=selected if selected is not None else metrics["test_accuracy"],
        selection="hold-out" if selected is not None else "last epoch",
        # The epoch `accuracy` comes from (1-based), so a baseline's is its last.
        selected_epoch=metrics.get("selected_epoch") if selected is not None else metrics["epochs"],
        final_test_accuracy=metrics["test_accuracy"],
        best_test_accuracy=metrics.get("best_test_accuracy", metrics["best_val_accuracy"]),
        best_val_accuracy=metrics["best_val_accuracy"] if metrics.get("validation") == "holdout" else None,
        final_flip_rate=metrics.get("final_flip_rate"), flip_rate_total=metrics.get("final_flip_rate_total"),
        final_disagreement=1 - float(log[-1]["agreement"]) if log and log[-1].get("agreement") else None,
        warmup_agreement=lns.get("agreement"), warmup_accuracy_change=lns.get("accuracy_change"),
        epochs=metrics["epochs"], wall_time_s=round(metrics["wall_time_s"]), run=os.path.relpath(out, root),
    )


def results_rows(folders: dict, root: str) -> list[dict]:
    """`run_row` of every run of `folders` (`{(quantizer, arm): [run folders]}`), with
    its quantizer and arm; a baseline's accuracy is its last epoch's."""
    return [dict(quantizer=quantizer, arm=arm, **run_row(out, root, last_epoch=arm == "baseline"))
            for (quantizer, arm), outs in folders.items() for out in outs]


def read_results_csv(path: str) -> list[dict]:
    """The rows of a campaign's `results.csv` (written by `write_results`), with
    `seed` an int, `accuracy` a float and `best_val_accuracy` a float or None (no
    hold-out), as `results_rows` gives them.

    # Raises
        ValueError: if the file lacks one of those columns, or `quantizer` and `arm`.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"quantizer", "arm", "seed", "accuracy"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} has no column {', '.join(sorted(missing))}")
        rows = list(reader)
    for row in rows:
        row["seed"], row["accuracy"] = int(row["seed"]), float(row["accuracy"])
        row["best_val_accuracy"] = float(row["best_val_accuracy"]) if row.get("best_val_accuracy") else None
        if row.get("best_test_accuracy"):
            row["best_test_accuracy"] = float(row["best_test_accuracy"])
    return rows


def paired_differences(rows: list[dict], quantizer: str, arm: str, reference: str = "finetune",
                       key: str = "accuracy") -> list[float]:
    """`arm`'s `key` minus `reference`'s, in points, one per seed both have (the same
    seed fine-tuned the same baseline: a paired difference). `key`: `accuracy` (test
    accuracy at the selected epoch), `best_test_accuracy` (the best over epochs) or
    `best_val_accuracy` (the hold-out's, at its selected epoch)."""
    theirs = {r["seed"]: 100 * r[key] for r in rows
              if r["quantizer"] == quantizer and r["arm"] == reference and r[key] is not None}
    return [100 * r[key] - theirs[r["seed"]] for r in rows
            if r["quantizer"] == quantizer and r["arm"] == arm and r["seed"] in theirs and r[key] is not None]


def _interval(mean: float, half: float, n: str | None = None, spec: str = ".2f") -> str:
    """'+0.10 (-0.20, +0.40), n=3' (`n` None: without it), or without the interval
    when it is nan; `spec` formats each figure."""
    count = f", {n}" if n else ""
    if math.isnan(half):
        return f"{mean:+{spec}}{count} (no interval)"
    return f"{mean:+{spec}} ({mean - half:+{spec}}, {mean + half:+{spec}}){count}"


def _percent(fractions: list[float]) -> str:
    """'72.50 ± 2.12': mean ± sample std of `fractions`, in percent."""
    mean, std = mean_std([100 * v for v in fractions])
    return f"{mean:.2f} ± {std:.2f}"


def _paired(rows: list[dict], quantizer: str, arm: str, key: str = "accuracy") -> str:
    """`arm`'s paired difference to `finetune` on `key` with its 95 % interval, or '–'."""
    diffs = paired_differences(rows, quantizer, arm, key=key)
    return _interval(*t_interval(diffs), f"n={len(diffs)}") if diffs else "–"


def results_table(rows: list[dict], folders: dict, protocol: str, data: str, holdout: int) -> list[str]:
    """The lines of `results.md`: the protocol, how accuracy is selected, and one table
    row per (quantizer, arm) of `folders` with runs in `rows` (see `results_rows`)."""
    selections = sorted({r["selection"] for r in rows})
    lines = [
        f"Protocol `{protocol}`: {json.dumps(PROTOCOLS[protocol])}",
        "",
        f"Data: {data}. Test accuracy: "
        + (f"fine-tuning arms at the epoch selected on the {holdout}-image hold-out, baselines at their "
           "last epoch, which the arms fine-tune" if holdout else "the last epoch's (no hold-out, no selection)")
        + f" (selection used here: {', '.join(selections)}). Δ to finetune: paired by seed (same baseline), "
        "mean and 95 % t-interval. The baseline row's spread is over baselines trained with different seeds. "
        "Best test accuracy is selected on the test set (the paper's \"best\"), for comparison only; "
        "its Δ is paired by seed as well.",
        "",
        "| quantizer | arm | seeds | test acc % (mean ± std) | Δ to finetune, points (95 % CI) | "
        "final test acc % | best test acc % (test-selected) | Δ best to finetune, points (95 % CI) | "
        "flip rate, last epoch | flipped since start | "
        "disagreement with labels, last epoch | warm start: agreement, Δ acc points | wall time / run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(values, spec=".4f"):
        values = [v for v in values if v is not None]
        return format(mean_std(values)[0], spec) if values else "–"

    for (quantizer, arm) in folders:
        mine = [r for r in rows if r["quantizer"] == quantizer and r["arm"] == arm]
        if not mine:
            continue
        delta, delta_best = "–", "–"
        if arm not in ("baseline", "finetune"):
            delta, delta_best = _paired(rows, quantizer, arm), _paired(rows, quantizer, arm, "best_test_accuracy")
        warm = "–"
        if any(r["warmup_agreement"] is not None for r in mine):
            warm = (f"{fmt([r['warmup_agreement'] for r in mine])}, "
                    f"{100 * mean_std([r['warmup_accuracy_change'] for r in mine])[0]:+.2f}")
        lines.append(
            f"| {quantizer} | {arm} | {len(mine)} | {_percent([r['accuracy'] for r in mine])} | {delta} | "
            f"{_percent([r['final_test_accuracy'] for r in mine])} | "
            f"{_percent([r['best_test_accuracy'] for r in mine])} | "
            f"{delta_best} | {fmt([r['final_flip_rate'] for r in mine])} | "
            f"{fmt([r['flip_rate_total'] for r in mine])} | {fmt([r['final_disagreement'] for r in mine])} | "
            f"{warm} | {mean_std([r['wall_time_s'] for r in mine])[0] / 60:.0f} min |"
        )
    return lines


# Han et al. (2020), Table 1 (ResNet-20, DoReFa, CIFAR-10), test accuracy in %:
# "best (mean ± std)" over their runs; the baseline is one network, 400 epochs.
PAPER_TABLE1 = {
    "baseline": dict(best=85.06, mean=None, std=None),
    "finetune": dict(best=85.32, mean=85.26, std=0.06),
    "lns_no_noisy": dict(best=85.43, mean=85.36, std=0.06),
    "lns": dict(best=85.78, mean=85.56, std=0.11),
}


def paper_table(rows: list[dict], quantizer: str = "dorefa") -> list[str]:
    """The lines of a section of `results.md`: Table 1 of the paper (`PAPER_TABLE1`)
    beside this campaign's `quantizer` rows, both ways. The paper's "best (mean ±
    std)" reads as the best test accuracy over epochs (selected on the test set),
    its maximum and mean ± std over runs; ours the same over seeds, and the honest
    figure beside it: test accuracy at the epoch the hold-out selects (a baseline's
    last epoch). The paper's Δ to finetune is the difference of its means (it
    gives no pairing); ours is paired by seed, with its 95 % t-interval."""
    lines = [
        "## Table 1 beside the paper's",
        "",
        "The paper: Han et al. (2020), Table 1 (ResNet-20, DoReFa, CIFAR-10, official pixels), \"best (mean ± std)\" "
        "test accuracy, read as the best over epochs. Ours: the same figure (test-selected, the maximum and "
        "mean ± std over seeds) and, the one to quote, test accuracy at the epoch the hold-out selects "
        "(a baseline's last epoch). Δ to finetune: the paper's difference of means; ours paired by seed with "
        "its 95 % t-interval.",
        "",
        "| arm | paper: best (mean ± std) | paper: Δ to finetune | ours: best (mean ± std), test-selected | "
        "ours: Δ best to finetune (95 % CI) | ours: hold-out-selected (mean ± std) | "
        "ours: Δ to finetune (95 % CI) | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, paper in PAPER_TABLE1.items():
        mine = [r for r in rows if r["quantizer"] == quantizer and r["arm"] == arm]
        theirs = f"{paper['best']:.2f}" if paper["mean"] is None else \
            f"{paper['best']:.2f} ({paper['mean']:.2f} ± {paper['std']:.2f})"
        paired = arm not in ("baseline", "finetune")
        their_delta = f"{paper['mean'] - PAPER_TABLE1['finetune']['mean']:+.2f}" if paired else "–"
        best = [r["best_test_accuracy"] for r in mine]
        # A baseline is one network at its last epoch, as the paper's single figure.
        ours_best = f"{100 * max(best):.2f} ({_percent(best)})" if mine and arm != "baseline" else "–"
        ours = _percent([r["accuracy"] for r in mine]) if mine else "–"
        lines.append(f"| {arm} | {theirs} | {their_delta} | {ours_best} | "
                     f"{_paired(rows, quantizer, arm, 'best_test_accuracy') if paired else '–'} | {ours} | "
                     f"{_paired(rows, quantizer, arm) if paired else '–'} | {len(mine)} |")
    return lines


def _log_value(row: dict, *keys: str) -> float:
    """The first of `keys` that `row` (a `log.csv` row) holds, as a float; nan if none."""
    for key in keys:
        if row.get(key) not in (None, "", "NA"):
            return float(row[key])
    return float("nan")


def regime_table(folders: dict) -> list[str]:
    """The lines of a section of `results.md`: where each arm starts and ends, from
    its runs' `log.csv`, mean over runs. Training cross-entropy at the first and the
    last fine-tuning epoch, and training, hold-out and test accuracy at the last;
    for a baseline, its last epoch (the model the arms start from). The paper's
    Fig. 3 reads the regime from these: fine-tuning's cross-entropy rising at first,
    and a lower final training loss with a lower test accuracy (overfitting).
    Training figures are Keras's running means over the epoch's augmented batches,
    in training mode; an LNS run's `ce` is its loss without the noisy-supervision term."""
    import numpy as np

    def cell(values, scale=1.0, spec=".2f"):
        values = [v for v in values if not math.isnan(v)]
        return format(scale * float(np.mean(values)), spec) if values else "–"

    lines = [
        "## The regime: where each arm starts and ends",
        "",
        "Mean over runs. Training figures are running means over an epoch's augmented batches (Keras's); "
        "`ce` is the cross-entropy alone (LNS's loss adds its noisy-supervision term). A baseline's columns "
        "are its last epoch, the model every arm starts from.",
        "",
        "| quantizer | arm | runs | training CE, epoch 1 | training CE, last epoch | training acc %, last epoch | "
        "hold-out acc %, last epoch | test acc %, last epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (quantizer, arm), outs in folders.items():
        logs = [log for log in (read_run(out)[1] for out in outs) if log]
        if not logs:
            continue
        first = "–" if arm == "baseline" else cell([_log_value(log[0], "ce", "loss") for log in logs], spec=".4f")
        holdout = [_log_value(log[-1], "val_accuracy") if log[-1].get("test_accuracy") else float("nan")
                   for log in logs]
        lines.append(
            f"| {quantizer} | {arm} | {len(logs)} | {first} | "
            f"{cell([_log_value(log[-1], 'ce', 'loss') for log in logs], spec='.4f')} | "
            f"{cell([_log_value(log[-1], 'accuracy') for log in logs], 100)} | {cell(holdout, 100)} | "
            f"{cell([_log_value(log[-1], 'test_accuracy', 'val_accuracy') for log in logs], 100)} |")
    return lines


def _direction(values: list[float]) -> int:
    """+1 if the 95 % t-interval of the mean of `values` lies above 0, -1 if below, 0
    if it holds 0 or there is none (fewer than 2 values; nan values, figures a log
    lacks, are dropped)."""
    values = [v for v in values if not math.isnan(v)]
    mean, half = t_interval(values)
    if not values or math.isnan(half):
        return 0
    return 1 if mean - half > 0 else -1 if mean + half < 0 else 0


def paper_observations(rows: list[dict], folders: dict, quantizer: str = "dorefa") -> list[str]:
    """The lines of a section of `results.md`: the four observations the paper draws
    from its Fig. 3 (Sec. 5.1), each measured on this campaign's `quantizer` runs,
    `lns` against `finetune` paired by seed (`rows` from `results_rows`):

    - (a) fine-tuning at lr 0.01 raises the training loss at first, LNS does not:
      each arm's training cross-entropy in fine-tuning epoch 1 minus the baseline's
      in its last epoch (the model both start from);
    - (b) LNS ends with the higher test accuracy: Δ at the hold-out-selected epoch
      (and, for comparison, the paper's best over epochs);
    - (c) LNS flips fewer binary weights than fine-tuning at every epoch: the
      paired difference of flip rates, epoch by epoch;
    - (d) fine-tuning ends with the lower training loss but the lower test accuracy
      (the overfitting regime), beside the baseline's training and test accuracy.

    A difference counts when its 95 % t-interval over seeds excludes 0. An
    observation holds when each difference it names counts in its direction (for
    (a), fine-tuning's rise counts and LNS's does not), does not hold when one
    counts against it, and is undecided otherwise. Cross-entropy is `ce`, without LNS's
    noisy-supervision term, so both arms' losses measure the same thing.
    """
    def logs(arm):
        runs = [read_run(out) for out in folders.get((quantizer, arm), [])]
        return {metrics["config"]["seed"]: log for metrics, log in runs}

    finetune, lns = logs("finetune"), logs("lns")
    seeds = sorted(set(finetune) & set(lns))
    lines = [
        "## The paper's four observations, measured here",
        "",
        "The paper's Sec. 5.1 reads four observations from its Fig. 3. Each is measured here on `lns` against "
        "`finetune`, paired by seed; a difference counts when its 95 % t-interval over seeds excludes 0. "
        "Training cross-entropy (CE) is Keras's running mean over an epoch's augmented batches, without LNS's "
        "noisy-supervision term.",
        "",
        "| | the paper | measured here, 95 % CI | verdict |",
        "|---|---|---|---|",
    ]
    baseline = [log for log in logs("baseline").values() if log]
    pairs = [(finetune[s], lns[s]) for s in seeds if finetune[s] and lns[s]]
    if not pairs or not baseline:
        return lines + ["| – | – | no `finetune` / `lns` pair and baseline yet | – |"]
    n = f"n={len(pairs)}"

    def interval(values, spec):
        values = [v for v in values if not math.isnan(v)]
        return _interval(*t_interval(values), spec=spec) if values else "not logged"

    # (a) The rise of each arm's loss over the baseline's, in the first fine-tuning epoch.
    start = _log_value(baseline[0][-1], "ce", "loss")
    rise_ft = [_log_value(ft[0], "ce", "loss") - start for ft, _ in pairs]
    rise_lns = [_log_value(ln[0], "ce", "loss") - start for _, ln in pairs]
    if all(math.isnan(v) for v in rise_ft + rise_lns):
        verdict = "undecided: no cross-entropy logged"
    elif (rise := _direction(rise_ft)) < 0:
        verdict = "does not hold: fine-tuning's loss falls"
    elif rise == 0:
        verdict = "undecided: fine-tuning's rise does not count"
    elif _direction(rise_lns) > 0:
        less = _direction([b - a for a, b in zip(rise_ft, rise_lns)]) < 0
        verdict = "does not hold: both rise" + (", LNS's less" if less else "")
    else:
        verdict = "holds"
    lines.append("| (a) | fine-tuning at lr 0.01 raises the training loss at first (from its baseline's 0.37); "
                 "LNS does not | "
                 f"CE in epoch 1 minus the baseline's last ({start:.4f}): finetune "
                 f"{interval(rise_ft, '.4f')}, lns {interval(rise_lns, '.4f')}, {n} | {verdict} |")

    # (b) The headline: test accuracy at the epoch the hold-out selects (a campaign
    # without a hold-out: the last epoch's).
    delta = paired_differences(rows, quantizer, "lns")
    best = paired_differences(rows, quantizer, "lns", key="best_test_accuracy")
    selected = "hold-out-selected" if all(r["selection"] == "hold-out" for r in rows
                                          if r["quantizer"] == quantizer and r["arm"] == "lns") else "last epoch"
    verdict = {1: "holds", -1: "does not hold: fine-tuning ends higher", 0: "undecided"}[_direction(delta)]
    lines.append(f"| (b) | LNS ends with the higher test accuracy (+0.30 points over fine-tuning) | "
                 f"Δ lns − finetune, points, {selected}: {_interval(*t_interval(delta), f'n={len(delta)}')}; "
                 f"best over epochs (test-selected): {_interval(*t_interval(best), f'n={len(best)}')} | {verdict} |")

    # (c) Flip rates epoch by epoch; an epoch neither arm logged a rate for is skipped.
    epochs = min(min(len(ft), len(ln)) for ft, ln in pairs)
    lower = higher = against = measured = 0
    for epoch in range(epochs):
        diffs = [100 * (_log_value(ln[epoch], "flip_rate") - _log_value(ft[epoch], "flip_rate")) for ft, ln in pairs]
        diffs = [d for d in diffs if not math.isnan(d)]
        if not diffs:
            continue
        measured += 1
        mean = sum(diffs) / len(diffs)
        lower, higher = lower + (mean < 0), higher + (mean > 0)
        against += _direction(diffs) > 0
    verdict = "undecided: no flip rates" if not measured else "holds" if not higher else \
        f"does not hold: LNS flips more in {higher} epoch{'s' if higher > 1 else ''}"
    lines.append(f"| (c) | LNS flips fewer binary weights than fine-tuning at every epoch | "
                 f"mean flip rate of lns below finetune's in {lower} of {measured} epochs, above in {higher} "
                 f"({against} of them counting), {n} | {verdict} |")

    # (d) Where each arm ends: training loss in its last epoch, test accuracy as reported.
    ce_gap = [_log_value(ft[-1], "ce", "loss") - _log_value(ln[-1], "ce", "loss") for ft, ln in pairs]
    signs = (_direction(ce_gap), _direction([-d for d in delta]))
    against = [why for sign, why in zip(signs, ("fine-tuning's training loss ends higher",
                                                "fine-tuning's test accuracy ends higher")) if sign > 0]
    verdict = "holds" if signs == (-1, -1) else f"does not hold: {'; '.join(against)}" if against else "undecided"
    train = 100 * _log_value(baseline[0][-1], "accuracy")
    test = 100 * _log_value(baseline[0][-1], "test_accuracy", "val_accuracy")
    lines.append(f"| (d) | fine-tuning ends with the lower training loss but the lower test accuracy "
                 f"(it overfits; LNS does less) | finetune − lns: last-epoch training CE "
                 f"{interval(ce_gap, '.4f')}, test accuracy points {interval([-d for d in delta], '.2f')}, {n}; "
                 f"the baseline's last epoch: "
                 f"training {train:.2f} %, test {test:.2f} % | {verdict} |")
    return lines


def baseline_comparison(rows: list[dict], other_rows: list[dict], other: str) -> list[str]:
    """The lines of a section of `results.md`: each fine-tuning arm's paired difference
    to `finetune` from this campaign's baseline (`rows`) and from another campaign's
    (`other_rows`, named `other`), and the difference between the two (this minus
    that) with its 95 % Welch interval; on the test split at the selected epoch, and
    on the hold-out that selects it. The seeds of the two campaigns share no
    baseline, so the two sets of differences are independent samples."""

    def baseline(rows, quantizer):
        # The arms fine-tune the campaign's first baseline (reproduce.py lists it first).
        mine = [r for r in rows if r["quantizer"] == quantizer and r["arm"] == "baseline"]
        return f"seed {mine[0]['seed']}, {100 * mine[0]['accuracy']:.2f} % test" if mine else "?"

    lines = [
        "## Does Δ to finetune depend on the baseline?",
        "",
        f"Each arm's Δ to finetune (paired by seed, 95 % t-interval) when it fine-tunes this campaign's "
        f"baseline and when it fine-tunes {other}'s, and the difference between the two Δs (this minus "
        "that; independent seeds, 95 % Welch interval). An interval that holds 0 finds no dependence.",
        "",
        "| quantizer | arm | accuracy on | baseline here | Δ here, points (95 % CI) | baseline there | Δ there | "
        "difference, points (95 % Welch CI) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    arms = dict.fromkeys((r["quantizer"], r["arm"]) for r in rows if r["arm"] not in ("baseline", "finetune"))
    for (quantizer, arm), (split, key) in itertools.product(arms, (("test", "accuracy"),
                                                                    ("hold-out", "best_val_accuracy"))):
        here = paired_differences(rows, quantizer, arm, key=key)
        there = paired_differences(other_rows, quantizer, arm, key=key)
        if not here or not there:
            continue
        lines.append(
            f"| {quantizer} | {arm} | {split} | {baseline(rows, quantizer)} | "
            f"{_interval(*t_interval(here), f'n={len(here)}')} | {baseline(other_rows, quantizer)} | "
            f"{_interval(*t_interval(there), f'n={len(there)}')} | "
            f"{_interval(*welch_interval(here, there), f'n={len(here)} and {len(there)}')} |")
    return lines


def write_results(folders: dict, results_dir: str, root: str, protocol: str, data: str,
                  holdout: int, compare: tuple[str, list[dict]] | None = None) -> tuple[list[dict], list[str]]:
    """Write `results.csv` (one row per run) and `results.md` (`results_table`;
    `paper_table` for the `paper` protocol; `regime_table`; `paper_observations`
    when an `lns` arm is there) of the runs of `folders` into `results_dir`; return
    the rows and the lines.
    `compare`, another campaign's name and rows (`read_results_csv`), adds
    `baseline_comparison`'s section.

    # Raises
        ValueError: if `folders` holds no run.
    """
    os.makedirs(results_dir, exist_ok=True)
    rows = results_rows(folders, root)
    if not rows:
        raise ValueError("no complete run to summarize yet")
    with open(os.path.join(results_dir, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = results_table(rows, folders, protocol, data, holdout)
    if protocol == "paper":
        lines += ["", *paper_table(rows)]
    lines += ["", *regime_table(folders)]
    if any(arm == "lns" for _, arm in folders):
        # The paper's claims, measured under any protocol: ours show where they fail.
        lines += ["", *paper_observations(rows, folders)]
    if compare:
        lines += ["", *baseline_comparison(rows, compare[1], compare[0])]
    with open(os.path.join(results_dir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return rows, lines


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_figure(folders: dict, path: str, root: str, title: str, quantizer_labels: bool = False) -> None:
    """Fig. 3 analogue at `path`: cross-entropy, test accuracy, flip rate and
    disagreement per fine-tuning epoch, mean ± std over each arm's runs, with the
    baselines' accuracy; `quantizer_labels` names arms `<quantizer>/<arm>`."""
    import numpy as np

    plt = _pyplot()
    panels = [
        ("ce", "training cross-entropy", lambda v: v),
        ("val_accuracy", "test accuracy %", lambda v: 100 * v),
        ("flip_rate", "binary weights flipped in the epoch %", lambda v: 100 * v),
        ("agreement", "disagreement with noisy labels %", lambda v: 100 * (1 - v)),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    for index, ((quantizer, arm), outs) in enumerate(folders.items()):
        if arm == "baseline" or not outs:
            continue
        color = f"C{index}"  # one colour per arm in every panel
        logs = [read_run(out)[1] for out in outs]
        for ax, (key, title_, transform) in zip(axes, panels):
            if key == "val_accuracy" and logs[0] and "test_accuracy" in logs[0][0]:
                key = "test_accuracy"  # with a hold-out, val_accuracy is the hold-out's
            series = [[transform(float(r[key])) for r in log if r.get(key) not in (None, "", "NA")] for log in logs]
            n = min(len(s) for s in series)
            if n == 0:
                continue
            values = np.array([s[:n] for s in series])
            epochs = np.arange(1, n + 1)
            label = f"{quantizer}/{arm}" if quantizer_labels else arm
            label += f" (n={len(values)})"
            few = n <= 30  # a marker and a tick per epoch; the paper's 120 epochs get neither
            ax.plot(epochs, values.mean(0), marker="o" if few else None, label=label, color=color)
            if len(values) > 1:
                # The rates and the cross-entropy are never negative, nor is their band.
                ax.fill_between(epochs, np.maximum(values.mean(0) - values.std(0), 0),
                                values.mean(0) + values.std(0), alpha=0.2, color=color)
            ax.set_ylabel(title_)
            ax.set_xlabel("fine-tuning epoch")
            if few:
                ax.set_xticks(epochs)
    for (quantizer, arm), outs in folders.items():
        if arm == "baseline" and outs:
            axes[1].axhline(100 * run_row(outs[0], root, last_epoch=True)["accuracy"], color="gray", linestyle="--",
                            label=f"baseline{' ' + quantizer if quantizer_labels else ''}")
    axes[0].legend()
    axes[1].legend(handles=[h for h in axes[1].get_lines() if h.get_label().startswith("baseline")])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def flip_heatmap(folders: dict, path: str, title: str, quantizer_labels: bool = False) -> bool:
    """Per-layer flip rate (layers x epochs) of the first run of each fine-tuning arm,
    from its `layers.csv`, at `path`; False (nothing written) if no run has one."""
    import numpy as np

    panels = []
    for (quantizer, arm), outs in folders.items():
        layers_csv = os.path.join(outs[0], "layers.csv") if outs else ""
        if arm == "baseline" or not os.path.exists(layers_csv):
            continue
        with open(layers_csv) as f:
            rows = [r for r in csv.DictReader(f) if r["figure"] == "flip_rate"]
        layers = list(dict.fromkeys(r["layer"] for r in rows))
        epochs = sorted({int(r["epoch"]) for r in rows})
        grid = np.full((len(layers), len(epochs)), np.nan)
        for r in rows:
            grid[layers.index(r["layer"]), epochs.index(int(r["epoch"]))] = 100 * float(r["value"])
        panels.append((f"{quantizer}/{arm}" if quantizer_labels else f"{arm}", layers, epochs, grid,
                       os.path.basename(os.path.dirname(outs[0]))))
    if not panels:
        return False
    plt = _pyplot()
    vmax = max(np.nanmax(p[3]) for p in panels) or 1.0
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 2, 0.28 * len(panels[0][1]) + 2),
                             squeeze=False)
    for ax, (label, layers, epochs, grid, seed) in zip(axes[0], panels):
        image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(f"{label} ({seed})")
        ax.set_xticks(range(len(epochs)), [str(e + 1) for e in epochs])
        ax.set_xlabel("fine-tuning epoch")
        ax.set_yticks(range(len(layers)), layers if ax is axes[0][0] else [])
    fig.colorbar(image, ax=axes[0].tolist(), label="binary weights flipped in the epoch %")
    fig.suptitle(title)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    return True


def sweep_csv(name: str, points: list[tuple], path: str) -> None:
    """Write a sweep's points, `(value, val mean, val std, test mean, test std, seeds)`
    in percent, as CSV to `path`."""
    with open(path, "w") as f:
        f.write(f"{name},val_accuracy_mean,val_accuracy_std,test_accuracy_mean,test_accuracy_std,seeds\n")
        f.writelines(f"{v:g},{m:.4f},{s:.4f},{tm:.4f},{ts:.4f},{n}\n" for v, m, s, tm, ts, n in points)


def sweep_figure(name: str, points: list[tuple], path: str, title: str, seeds: int,
                 reference: tuple[float, int] | None = None) -> None:
    """Validation accuracy against the swept `name` (`"alpha"` or `"rho"`), mean ± std
    over `seeds` (Figs. 4, 5), at `path`; `reference` is plain fine-tuning's mean and
    its number of seeds, drawn as a line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    xs, means, stds, *_ = zip(*points)
    ax.errorbar(range(len(xs)), means, yerr=stds, marker="o", capsize=3,
                label=f"LNS, mean ± std over {seeds_label(seeds)}")
    if reference is not None:
        ax.axhline(reference[0], color="gray", linestyle="--",
                   label=f"finetune, mean over {seeds_label(reference[1])}")
    ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
    ax.set_xlabel({"alpha": "α (weight of the noisy-supervision loss)", "rho": "ρ₊ = ρ₋ (assumed noise rate)"}[name])
    ax.set_ylabel("validation accuracy % (selected epoch)")
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
