"""The paper's CIFAR-10 ablation (Table 1), sweeps (Figs. 4-5) and figures (Fig. 3).

    python train/reproduce.py --protocol short --seeds 3 --baseline_seeds 2   # Table 1 arms
    python train/reproduce.py --protocol short --seeds 2 --sweep alpha=0,0.1,0.3,1,3
    python train/reproduce.py --protocol short --quantizers dorefa,xnor,binarynet

Every run is one `train/fit.py` process in its own folder,
`<runs_dir>/<quantizer>/seed<k>/<arm>`; a run whose metrics.json exists is skipped
and an interrupted one resumes, so a campaign can be stopped and continued by
rerunning the same command. Every arm and seed fine-tunes the seed-0 baseline
with the same schedule; `--baseline_seeds 2` trains a second baseline to show how
much baselines differ. Results go to `<results_dir>/results.{md,csv}` and PNG figures.

Arms (paper Table 1, plus the gated mapping and BONN):
  baseline      the pretrained binary network, no fine-tuning
  finetune      plain fine-tuning of the baseline
  lns_no_noisy  LNS mapping, alpha = 0 (no noisy supervision while fine-tuning)
  lns           LNS with --alpha and --rho (the default, ungated mapping)
  lns_gated     LNS with the gated mapping and Eq. 15 on its output (the first design)
  bonn          BONN's Bayesian kernel and feature losses, fine-tuned likewise

Every fine-tuning arm trains the same epochs with the same schedule. The LNS arms'
warm start fits their mappings to the pretrained binary weights on the noisy loss
alone, learning nothing from the images, so it is not an extra training epoch.
Runs go seed by seed, so that complete paired comparisons arrive first.

Selection is honest: the protocols hold out training images (10,000 for CIFAR-10)
and every run reports test accuracy at the epoch with the best hold-out accuracy.
results.md gives it as mean ± std over seeds and the paired difference to
`finetune` (same seed, same baseline) with a 95 % t-interval; the best test
accuracy over the epochs (the paper's "best", selected on the test set) is a
second, labelled column. Sweeps select on the hold-out too; their points at
alpha = 0 and at (--alpha, --rho) are the `lns_no_noisy` and `lns` arms' runs.
"""

import csv
import json
import math
import os
import statistics
import subprocess
import sys

from absl import app, flags

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIT = os.path.join(ROOT, "train", "fit.py")
# arm -> (model suffix, fit.py options of the arm); the LNS arms also warm-start.
ARMS = {
    "baseline": ("", {}),
    "finetune": ("", {}),
    "lns_no_noisy": ("_lns", {"alpha": 0.0}),
    "lns": ("_lns", {}),
    "lns_gated": ("_lns", {"gated": True, "loss_input": "output"}),
    # The warm start's earlier default, kept to compare: stop once 1 - rho of all
    # binary weights (0.995 at the default rho) agree with their labels. The runs
    # under these names in campaigns/short were made before the mapping's hidden
    # width followed c_out (docs/design.md), with the hidden width 2 c_in.
    "lns_stop_rho": ("_lns", {"warmup_agreement": 0.995, "warmup_layer_agreement": 0.0}),
    "lns_no_noisy_stop_rho": ("_lns", {"alpha": 0.0, "warmup_agreement": 0.995, "warmup_layer_agreement": 0.0}),
    "bonn": ("_bonn", {}),
}
DEFAULT_ARMS = ("baseline", "finetune", "lns_no_noisy", "lns", "bonn")

# What each protocol runs. Every protocol but `short_sgd` holds out 10,000
# training images (200 for `tiny`): runs select their epoch there and report test
# accuracy at that epoch. `short` is the recipe of docs/recipe.md (a binary
# ResNet-20 baseline in under two hours on 2 CPU cores) with fine-tuning at a tenth
# of its learning rate, as the paper fine-tunes at a tenth of its baseline's.
# `short_sgd` is the first short protocol (15 SGD epochs, no hold-out), kept so
# that the first campaign (docs/results/short_sgd/) can be reproduced.
PROTOCOLS = {
    "paper": dict(
        baseline=dict(epochs=400, lr=0.1, lr_schedule="cosine"),
        finetune=dict(epochs=120, lr=0.01, lr_schedule="step", lr_boundaries="30,60,90"),
        warmup_epochs=5,
        validation_size=10000,
    ),
    "short": dict(
        baseline=dict(epochs=90, optimizer="adam", lr=5e-3, lr_schedule="cosine"),
        finetune=dict(epochs=4, optimizer="adam", lr=5e-4, lr_schedule="step", lr_boundaries="2,3"),
        warmup_epochs=1,
        validation_size=10000,
    ),
    # `medium`: long enough for plain fine-tuning to move the baseline. The paper's
    # shape: a tenth of the baseline's learning rate, x0.1 at 1/4, 1/2 and 3/4.
    "medium": dict(
        baseline=dict(epochs=90, optimizer="adam", lr=5e-3, lr_schedule="cosine"),
        finetune=dict(epochs=12, optimizer="adam", lr=5e-4, lr_schedule="step", lr_boundaries="3,6,9"),
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

flags.DEFINE_enum("protocol", "short", list(PROTOCOLS), "Recipe: paper (400 + 120 epochs), short (90 + 4), "
                  "medium (90 + 12), short_sgd (the first campaign's), tiny (tests).")
flags.DEFINE_list("arms", list(DEFAULT_ARMS), f"Arms to run, of {', '.join(ARMS)}.")
flags.DEFINE_list("quantizers", ["dorefa"], "Baseline weight quantizers (Table 2 with several).")
flags.DEFINE_integer("seeds", 1, "Fine-tuning seeds per arm (paper: 5).", lower_bound=1)
flags.DEFINE_integer("baseline_seeds", 1, "Baselines to train per quantizer; every arm fine-tunes the first, "
                     "the others show the baseline's seed-to-seed spread.", lower_bound=1)
flags.DEFINE_float("alpha", 1.0, "LNS alpha of the lns arm.", lower_bound=0)
flags.DEFINE_float("rho", 0.005, "LNS noise rate of the lns arm.", lower_bound=0)
flags.DEFINE_string("sweep", None, "alpha=v1,v2,... or rho=v1,... : LNS runs on the validation hold-out (Figs. 4, 5).")
flags.DEFINE_integer("validation_size", None, "Training images held out to select epochs and sweep values "
                     "(default: the protocol's; 0 for none).", lower_bound=0)
flags.DEFINE_string("dataset", "cifar10", "Dataset (digits for a quick look).")
flags.DEFINE_string("data_path", os.path.join(ROOT, "..", "shared", "data", "cifar10", "cifar10_jpegq75.npz"),
                    "CIFAR-10 .npz or folder; empty for tensorflow-datasets.")
flags.DEFINE_string("runs_dir", None, "Where runs go (default runs/<protocol>).")
flags.DEFINE_string("baselines_dir", None, "Where the baselines are (default --runs_dir): another campaign's, "
                    "whose protocol has the same baseline recipe, e.g. medium fine-tuning short's baselines.")
flags.DEFINE_string("results_dir", None, "Where results.md/csv and figures go (default <runs_dir>/results).")
flags.DEFINE_bool("figures", True, "Write PNG figures.")
flags.DEFINE_bool("dry_run", False, "Print the fit.py commands only.")
flags.DEFINE_bool("report_only", False, "Train nothing: summarize the complete runs so far (results, figures).")


def holdout():
    """Training images held out for selection: --validation_size, else the protocol's."""
    return PROTOCOLS[FLAGS.protocol]["validation_size"] if FLAGS.validation_size is None else FLAGS.validation_size


def fit_args(protocol, arm, quantizer, seed, pretrained, extra=None):
    """The fit.py arguments of one run."""
    spec = PROTOCOLS[protocol]
    phase = spec["baseline"] if arm == "baseline" else spec["finetune"]
    suffix, arm_options = ARMS[arm]
    options = dict(model=spec.get("model", "resnet20") + suffix, quantizer=quantizer, seed=seed, dataset=FLAGS.dataset, batch_size=128,
                   optimizer="sgd", momentum=0.9, weight_decay=0.0, verbose=2)
    options.update(**spec.get("common", {}), **phase)
    if FLAGS.dataset == "cifar10" and FLAGS.data_path:
        options["data_path"] = FLAGS.data_path
    if holdout():
        options["validation_size"] = holdout()
    if arm != "baseline":
        options["pretrained"] = pretrained
    if suffix == "_lns":
        options.update(alpha=FLAGS.alpha, rho=FLAGS.rho, warmup_epochs=spec["warmup_epochs"])
    options.update(**arm_options, **(extra or {}))
    return [f"--{k}={v}" for k, v in options.items()]


def complete(out):
    """Whether `out` holds a finished run: fit.py writes metrics.json last."""
    return os.path.exists(os.path.join(out, "metrics.json"))


def run_fit(args, out):
    """Run fit.py unless `out` holds a complete run; its log goes to out/fit.log."""
    if complete(out):
        print(f"complete, skipped: {out}")
        return
    command = [sys.executable, FIT, *args, f"--output_dir={out}"]
    print(" ".join(command), flush=True)
    if FLAGS.dry_run:
        return
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "fit.log"), "a") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if result.returncode:
        sys.exit(f"reproduce.py: error: run failed (exit {result.returncode}), see {out}/fit.log")


def data_label():
    """The data of a campaign, as figure titles name it."""
    if FLAGS.dataset != "cifar10":
        return FLAGS.dataset
    return "CIFAR-10 (JPEG q75 copy)" if FLAGS.data_path else "CIFAR-10 (tensorflow-datasets)"


def read_run(out):
    """metrics.json and the per-epoch log of a complete run."""
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(out, "log.csv")) as f:
        rows = list(csv.DictReader(f))
    return metrics, rows


def _mean_std(values):
    if not values:
        return float("nan"), float("nan")
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


# Two-sided 95 % quantiles of Student's t, by degrees of freedom.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def t_interval(values):
    """Mean and half-width of the 95 % t-interval of `values` (nan for fewer than 2)."""
    mean, std = _mean_std(values)
    n = len(values)
    if n < 2:
        return mean, float("nan")
    t = _T95[max(k for k in _T95 if k <= n - 1)] if n - 1 <= 30 else 1.96
    return mean, t * std / math.sqrt(n)


def seeds_label(n):
    """'1 seed', '3 seeds': for legends and printed summaries."""
    return f"{n} seed{'' if n == 1 else 's'}"


def baseline_dir(runs_dir, quantizer, seed=0):
    """The folder of a quantizer's baseline; every arm fine-tunes the seed-0 one."""
    return os.path.join(FLAGS.baselines_dir or runs_dir, quantizer, f"seed{seed}", "baseline")


def campaign(runs_dir, train=True):
    """Run every arm, seed by seed; return {(quantizer, arm): [complete run folders]}.

    The seed-0 baseline comes first, then the fine-tuning arms seed by seed (so
    complete paired comparisons arrive first), then the other baselines.
    With `train=False`, nothing runs: the complete runs found are returned.
    """
    folders = {}
    for quantizer in FLAGS.quantizers:
        base_dir = baseline_dir(runs_dir, quantizer)
        if train:
            run_fit(fit_args(FLAGS.protocol, "baseline", quantizer, 0, None), base_dir)
        folders[(quantizer, "baseline")] = [base_dir]
        for arm in FLAGS.arms:  # the table's order
            if arm != "baseline":
                folders[(quantizer, arm)] = []
        for seed in range(FLAGS.seeds):
            for arm in FLAGS.arms:
                if arm == "baseline":
                    continue
                out = os.path.join(runs_dir, quantizer, f"seed{seed}", arm)
                if train:
                    run_fit(fit_args(FLAGS.protocol, arm, quantizer, seed, os.path.join(base_dir, "model.keras")), out)
                folders[(quantizer, arm)].append(out)
        for seed in range(1, FLAGS.baseline_seeds):
            out = baseline_dir(runs_dir, quantizer, seed)
            if train:
                run_fit(fit_args(FLAGS.protocol, "baseline", quantizer, seed, None), out)
            folders[(quantizer, "baseline")].append(out)
    if FLAGS.dry_run:
        return folders
    return {key: [out for out in outs if complete(out)] for key, outs in folders.items()}


def run_row(out, last_epoch=False):
    """One run's figures, accuracies as fractions.

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
        epochs=metrics["epochs"], wall_time_s=round(metrics["wall_time_s"]), run=os.path.relpath(out, ROOT),
    )


def summarize(folders, results_dir):
    """results.csv (one row per run) and results.md (one row per arm, paired differences)."""
    os.makedirs(results_dir, exist_ok=True)
    rows = [dict(quantizer=quantizer, arm=arm, **run_row(out, last_epoch=arm == "baseline"))
            for (quantizer, arm), outs in folders.items() for out in outs]
    if not rows:
        sys.exit("reproduce.py: error: no complete run to summarize yet")
    with open(os.path.join(results_dir, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    selections = sorted({r["selection"] for r in rows})
    lines = [
        f"Protocol `{FLAGS.protocol}`: {json.dumps(PROTOCOLS[FLAGS.protocol])}",
        "",
        f"Data: {data_label()}. Test accuracy: "
        + (f"fine-tuning arms at the epoch selected on the {holdout()}-image hold-out, baselines at their "
           "last epoch, which the arms fine-tune" if holdout() else "the last epoch's (no hold-out, no selection)")
        + f" (selection used here: {', '.join(selections)}). Δ to finetune: paired by seed (same baseline), mean and 95 % "
        "t-interval. The baseline row's spread is over baselines trained with different seeds. "
        "Best test accuracy is selected on the test set (the paper's \"best\"), for comparison only.",
        "",
        "| quantizer | arm | seeds | test acc % (mean ± std) | Δ to finetune, points (95 % CI) | "
        "final test acc % | best test acc % (test-selected) | flip rate, last epoch | flipped since start | "
        "disagreement with labels, last epoch | warm start: agreement, Δ acc points | wall time / run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(values, spec=".4f"):
        values = [v for v in values if v is not None]
        return format(_mean_std(values)[0], spec) if values else "–"

    def pct(values):
        mean, std = _mean_std([100 * v for v in values])
        return f"{mean:.2f} ± {std:.2f}"

    for (quantizer, arm) in folders:
        mine = [r for r in rows if r["quantizer"] == quantizer and r["arm"] == arm]
        if not mine:
            continue
        reference = {r["seed"]: 100 * r["accuracy"] for r in rows
                     if r["quantizer"] == quantizer and r["arm"] == "finetune"}
        diffs = [100 * r["accuracy"] - reference[r["seed"]] for r in mine if r["seed"] in reference]
        if arm in ("baseline", "finetune") or not diffs:
            delta = "–"
        else:
            d_mean, d_half = t_interval(diffs)
            delta = (f"{d_mean:+.2f} ({d_mean - d_half:+.2f}, {d_mean + d_half:+.2f}), n={len(diffs)}"
                     if len(diffs) > 1 else f"{d_mean:+.2f}, n=1 (no interval)")
        warm = "–"
        if any(r["warmup_agreement"] is not None for r in mine):
            warm = (f"{fmt([r['warmup_agreement'] for r in mine])}, "
                    f"{100 * _mean_std([r['warmup_accuracy_change'] for r in mine])[0]:+.2f}")
        lines.append(
            f"| {quantizer} | {arm} | {len(mine)} | {pct([r['accuracy'] for r in mine])} | {delta} | "
            f"{pct([r['final_test_accuracy'] for r in mine])} | {pct([r['best_test_accuracy'] for r in mine])} | "
            f"{fmt([r['final_flip_rate'] for r in mine])} | "
            f"{fmt([r['flip_rate_total'] for r in mine])} | {fmt([r['final_disagreement'] for r in mine])} | "
            f"{warm} | {_mean_std([r['wall_time_s'] for r in mine])[0] / 60:.0f} min |"
        )
    with open(os.path.join(results_dir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


def figures(folders, results_dir):
    """Fig. 3 analogue: cross-entropy, test accuracy, flip rate and disagreement per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

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
        for ax, (key, title, transform) in zip(axes, panels):
            if key == "val_accuracy" and logs[0] and "test_accuracy" in logs[0][0]:
                key = "test_accuracy"  # with a hold-out, val_accuracy is the hold-out's
            series = [[transform(float(r[key])) for r in log if r.get(key) not in (None, "", "NA")] for log in logs]
            n = min(len(s) for s in series)
            if n == 0:
                continue
            values = np.array([s[:n] for s in series])
            epochs = np.arange(1, n + 1)
            label = arm if len(FLAGS.quantizers) == 1 else f"{quantizer}/{arm}"
            label += f" (n={len(values)})"
            ax.plot(epochs, values.mean(0), marker="o", label=label, color=color)
            if len(values) > 1:
                ax.fill_between(epochs, values.mean(0) - values.std(0), values.mean(0) + values.std(0), alpha=0.2,
                                color=color)
            ax.set_ylabel(title)
            ax.set_xlabel("fine-tuning epoch")
            ax.set_xticks(epochs)
    for (quantizer, arm), outs in folders.items():
        if arm == "baseline" and outs:
            axes[1].axhline(100 * run_row(outs[0], last_epoch=True)["accuracy"], color="gray", linestyle="--",
                            label=f"baseline{'' if len(FLAGS.quantizers) == 1 else ' ' + quantizer}")
    axes[0].legend()
    axes[1].legend(handles=[h for h in axes[1].get_lines() if h.get_label().startswith("baseline")])
    fig.suptitle(f"{data_label()}, binary ResNet-20, protocol {FLAGS.protocol}: mean ± std over seeds")
    fig.tight_layout()
    path = os.path.join(results_dir, "fig3_curves.png")
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


def flip_heatmaps(folders, results_dir):
    """Per-layer flip rate (layers x epochs) of the first run of each fine-tuning arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = []
    for (quantizer, arm), outs in folders.items():
        path = os.path.join(outs[0], "layers.csv") if outs else ""
        if arm == "baseline" or not os.path.exists(path):
            continue
        with open(path) as f:
            rows = [r for r in csv.DictReader(f) if r["figure"] == "flip_rate"]
        layers = list(dict.fromkeys(r["layer"] for r in rows))
        epochs = sorted({int(r["epoch"]) for r in rows})
        grid = np.full((len(layers), len(epochs)), np.nan)
        for r in rows:
            grid[layers.index(r["layer"]), epochs.index(int(r["epoch"]))] = 100 * float(r["value"])
        panels.append((f"{arm}" if len(FLAGS.quantizers) == 1 else f"{quantizer}/{arm}", layers, epochs, grid,
                       os.path.basename(os.path.dirname(outs[0]))))
    if not panels:
        return
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
    fig.suptitle(f"Per-layer flip rate, {data_label()}, protocol {FLAGS.protocol}")
    path = os.path.join(results_dir, "flip_heatmap.png")
    fig.savefig(path, dpi=80, bbox_inches="tight")
    print(f"wrote {path}")


def sweep_dir(runs_dir, quantizer, seed, name, value):
    """The run of one sweep point. A point that is an arm's setting is that arm's
    run: alpha = 0 is `lns_no_noisy`, (--alpha, --rho) is `lns`."""
    alpha = value if name == "alpha" else FLAGS.alpha
    rho = value if name == "rho" else FLAGS.rho
    seed_dir = os.path.join(runs_dir, quantizer, f"seed{seed}")
    if alpha == 0:
        return os.path.join(seed_dir, "lns_no_noisy")
    if (alpha, rho) == (FLAGS.alpha, FLAGS.rho):
        return os.path.join(seed_dir, "lns")
    return os.path.join(seed_dir, f"lns_{name}{value:g}")


def sweep(runs_dir, results_dir):
    """LNS accuracy on the validation hold-out against alpha or rho (Figs. 4, 5).

    Every point fine-tunes the campaign's seed-0 baseline with the `lns` arm's
    schedule, once per seed; the hold-out selects each run's epoch and its accuracy
    there is the point's figure (test accuracy at that epoch is in the CSV).
    """
    name, _, values = FLAGS.sweep.partition("=")
    if name not in ("alpha", "rho") or not values:
        sys.exit(f"reproduce.py: error: --sweep must be alpha=v1,v2,... or rho=v1,..., got {FLAGS.sweep!r}")
    try:
        grid = [float(v) for v in values.split(",")]
    except ValueError:
        sys.exit(f"reproduce.py: error: --sweep values must be numbers, got {values!r}")
    if not holdout():
        sys.exit(f"reproduce.py: error: a sweep selects on a hold-out; protocol {FLAGS.protocol} has none, "
                 "pass --validation_size")
    quantizer = FLAGS.quantizers[0]
    base_dir = baseline_dir(runs_dir, quantizer)
    run_fit(fit_args(FLAGS.protocol, "baseline", quantizer, 0, None), base_dir)
    results = []
    for value in grid:
        runs = []
        for seed in range(FLAGS.seeds):
            out = sweep_dir(runs_dir, quantizer, seed, name, value)
            extra = {name: value, **({"alpha": FLAGS.alpha} if name == "rho" else {})}
            run_fit(fit_args(FLAGS.protocol, "lns", quantizer, seed, os.path.join(base_dir, "model.keras"), extra), out)
            if not FLAGS.dry_run:
                runs.append(run_row(out))
        results.append((value, *_mean_std([100 * r["best_val_accuracy"] for r in runs]),
                        *_mean_std([100 * r["accuracy"] for r in runs]), len(runs)))
    if FLAGS.dry_run:
        return
    # The reference the paper's figures draw: plain fine-tuning of the same
    # baseline with the same schedule and seeds, selected on the same hold-out.
    finetune = [os.path.join(runs_dir, quantizer, f"seed{seed}", "finetune") for seed in range(FLAGS.seeds)]
    finetune = [100 * run_row(out)["best_val_accuracy"] for out in finetune if complete(out)]
    reference = _mean_std(finetune)[0] if finetune else None
    os.makedirs(results_dir, exist_ok=True)
    with open(os.path.join(results_dir, f"sweep_{name}.csv"), "w") as f:
        f.write(f"{name},val_accuracy_mean,val_accuracy_std,test_accuracy_mean,test_accuracy_std,seeds\n")
        f.writelines(f"{v:g},{m:.4f},{s:.4f},{tm:.4f},{ts:.4f},{n}\n" for v, m, s, tm, ts, n in results)
    if FLAGS.figures:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        xs, means, stds, *_ = zip(*results)
        ax.errorbar(range(len(xs)), means, yerr=stds, marker="o", capsize=3,
                    label=f"LNS, mean ± std over {seeds_label(FLAGS.seeds)}")
        if finetune:
            ax.axhline(reference, color="gray", linestyle="--",
                       label=f"finetune, mean over {seeds_label(len(finetune))}")
        ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
        ax.set_xlabel({"alpha": "α (weight of the noisy-supervision loss)", "rho": "ρ₊ = ρ₋ (assumed noise rate)"}[name])
        ax.set_ylabel("validation accuracy % (selected epoch)")
        ax.legend()
        fixed = f"ρ = {FLAGS.rho:g}" if name == "alpha" else f"α = {FLAGS.alpha:g}"
        ax.set_title(f"{data_label()}, {holdout()}-image hold-out\nprotocol {FLAGS.protocol}, {fixed}", fontsize=9)
        fig.tight_layout()
        fig.savefig(os.path.join(results_dir, f"sweep_{name}.png"), dpi=80)
    print(f"sweep {name}: " + ", ".join(f"{v:g}: {m:.2f}±{s:.2f}" for v, m, s, *_ in results))
    if finetune:
        print(f"finetune reference: {reference:.2f} (mean over {seeds_label(len(finetune))})")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"reproduce.py: error: unexpected arguments {argv[1:]}")
    unknown = set(FLAGS.arms) - set(ARMS)
    if unknown:
        sys.exit(f"reproduce.py: error: unknown arms {sorted(unknown)}; choose from {list(ARMS)}")
    runs_dir = FLAGS.runs_dir or os.path.join(ROOT, "runs", FLAGS.protocol)
    results_dir = FLAGS.results_dir or os.path.join(runs_dir, "results")
    if FLAGS.sweep:
        sweep(runs_dir, results_dir)
        return
    folders = campaign(runs_dir, train=not FLAGS.report_only)
    if FLAGS.dry_run:
        return
    summarize(folders, results_dir)
    if FLAGS.figures:
        figures(folders, results_dir)
        flip_heatmaps(folders, results_dir)


if __name__ == "__main__":
    app.run(main)
