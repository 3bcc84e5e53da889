"""The paper's CIFAR-10 ablation (Table 1), sweeps (Figs. 4-5) and figures (Fig. 3).

    python train/reproduce.py --protocol short --seeds 3 --baseline_seeds 2   # Table 1 arms
    python train/reproduce.py --protocol short --seeds 2 --sweep alpha=0,0.1,0.3,1,3
    python train/reproduce.py --protocol short --quantizers dorefa,xnor,binarynet

Every run is one `train/fit.py` process in its own folder,
`<runs_dir>/<quantizer>/seed<k>/<arm>`; a run whose metrics.json exists is skipped
and an interrupted one resumes, so a campaign can be stopped and continued by
rerunning the same command. Every arm and seed fine-tunes the seed-0 baseline
(`--baseline_seed` picks another) with the same schedule; `--baseline_seeds 2` trains a second baseline to show how
much baselines differ. Results go to `<results_dir>/results.{md,csv}` and PNG figures.
`--compare_to <another campaign's results.csv>` adds to results.md whether the arms'
differences to finetune depend on the baseline (from --baseline_seed 1, say, against
seed 0's campaign).

Arms (paper Table 1, plus the gated mapping and BONN):
  baseline      the pretrained binary network, no fine-tuning
  finetune      plain fine-tuning of the baseline
  lns_no_noisy  LNS mapping, alpha = 0 (no noisy supervision while fine-tuning)
  lns           LNS with --alpha and --rho (the default, ungated mapping)
  lns_gated     LNS with the gated mapping and Eq. 15 on its output
  lns_stop_rho, lns_no_noisy_stop_rho
                lns and lns_no_noisy with the warm start stopped at 1 - rho overall
  lns_alpha_0.1, lns_pretrained_labels, lns_theta_lr_0.1
                lns with alpha = 0.1; with labels frozen at the pretrained signs;
                with the mappings at a tenth of the learning rate
  bonn          BONN's Bayesian kernel and feature losses, fine-tuned likewise
(lns_larq.protocols: ARMS, PROTOCOLS.)

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

import os
import subprocess
import sys

from absl import app, flags

from cli import fail
from lns_larq import jobs, protocols, report
from lns_larq.protocols import ARMS, DEFAULT_ARMS, PROTOCOLS
from lns_larq.stats import mean_std

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIT = os.path.join(ROOT, "train", "fit.py")

flags.DEFINE_enum("protocol", "short", list(PROTOCOLS), "Recipe: paper (400 + 120 epochs), short (90 + 4), "
                  "medium (90 + 12), long (90 + 28), short_sgd (the first campaign's), tiny (tests).")
flags.DEFINE_string("model", None, "Base model of every run (default: the protocol's, resnet20); the LNS and "
                    "BONN arms train its _lns and _bonn variants.")
flags.DEFINE_list("arms", list(DEFAULT_ARMS), f"Arms to run, of {', '.join(ARMS)}.")
flags.DEFINE_list("quantizers", ["dorefa"], "Baseline weight quantizers (Table 2 with several).")
flags.DEFINE_integer("seeds", 1, "Fine-tuning seeds per arm (paper: 5).", lower_bound=1)
flags.DEFINE_list("arm_seeds", [], "<arm>=<seeds> for arms with another number of seeds than --seeds, "
                  "e.g. lns_no_noisy=3.")
flags.DEFINE_integer("jobs", 1, "Runs at once, each pinned to its own share of the cores with one TensorFlow "
                     "thread per core; a fine-tuning arm starts once its baseline is complete.", lower_bound=1)
flags.DEFINE_string("after_run", None, "Shell command run after each run that ends well, once the report is "
                    "regenerated (RUN_DIR names the run), e.g. to commit the results.")
flags.DEFINE_integer("baseline_seeds", 1, "Baselines to train per quantizer; every arm fine-tunes the first, "
                     "the others show the baseline's seed-to-seed spread.", lower_bound=1)
flags.DEFINE_integer("baseline_seed", 0, "The seed of the baseline every arm fine-tunes (another seed asks whether "
                     "the arms' differences depend on the baseline).", lower_bound=0)
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
flags.DEFINE_string("compare_to", None, "Another campaign's results.csv, of the same protocol from another "
                    "baseline (--baseline_seed): results.md adds whether the arms' differences to finetune "
                    "depend on the baseline.")
flags.DEFINE_bool("figures", True, "Write PNG figures.")
flags.DEFINE_bool("dry_run", False, "Print the fit.py commands only.")
flags.DEFINE_bool("report_only", False, "Train nothing: summarize the complete runs so far (results, figures).")


def holdout():
    """Training images held out for selection: --validation_size, else the protocol's."""
    return protocols.holdout(FLAGS.protocol, FLAGS.validation_size)


def fit_args(arm, quantizer, seed, pretrained, extra=None):
    """The fit.py arguments of one run of the campaign the flags describe."""
    return protocols.fit_args(FLAGS.protocol, arm, quantizer, seed, pretrained, dataset=FLAGS.dataset,
                              data_path=FLAGS.data_path, validation_size=FLAGS.validation_size,
                              alpha=FLAGS.alpha, rho=FLAGS.rho, extra=extra, model=FLAGS.model)


def complete(out):
    """Whether `out` holds a finished run: fit.py writes metrics.json last."""
    return jobs.complete(out)


def job(args, out, needs=None):
    """The fit.py run `args` writing into `out`, started once the run `needs` is complete."""
    return jobs.Job([sys.executable, FIT, *args, f"--output_dir={out}"], out, needs)


def run_jobs(todo, on_done=None):
    """Run the jobs `todo` (--jobs at once), or with --dry_run print their commands;
    fail in one line if a run fails or cannot start."""
    if FLAGS.dry_run:
        for j in todo:
            print(f"complete, skipped: {j.out}" if complete(j.out) else " ".join(j.command))
        return
    try:
        failed = jobs.run_jobs(todo, FLAGS.jobs, on_done=on_done, log=lambda line: print(line, flush=True))
    except jobs.JobError as e:
        fail(str(e))
    if failed:
        fail(f"{len(failed)} run(s) failed or could not start: {', '.join(j.out for j in failed)} "
             "(see their fit.log)")


def run_fit(args, out):
    """Run fit.py unless `out` holds a complete run; its log goes to out/fit.log."""
    run_jobs([job(args, out)])


def arm_seeds():
    """{arm: seeds} from --seeds and --arm_seeds."""
    counts = {arm: FLAGS.seeds for arm in FLAGS.arms}
    for item in FLAGS.arm_seeds:
        arm, _, count = item.partition("=")
        if arm not in counts or not count.isdigit() or int(count) < 1:
            fail(f"--arm_seeds takes <arm>=<seeds> of the --arms, seeds >= 1; got {item!r}")
        counts[arm] = int(count)
    return counts


def data_label():
    """The data of the campaign, as tables and figure titles name it."""
    return report.data_label(FLAGS.dataset, FLAGS.data_path)


def baseline_dir(runs_dir, quantizer, seed=None):
    """The folder of a quantizer's baseline of `seed`, by default the one every arm
    fine-tunes (--baseline_seed)."""
    seed = FLAGS.baseline_seed if seed is None else seed
    return protocols.baseline_dir(runs_dir, quantizer, seed, FLAGS.baselines_dir)


def campaign(runs_dir, on_done=None, train=True):
    """Run every arm, seed by seed; return {(quantizer, arm): [complete run folders]}.

    The baseline the arms fine-tune (seed --baseline_seed, 0 by default) comes
    first, then the fine-tuning arms seed by seed (so complete paired comparisons
    arrive first), then the other baselines. With --jobs > 1 they run that many at
    once, each on its own cores, and an arm starts once its baseline is complete.
    `on_done(out, folders)` runs after each run that ends well (`out`, its folder;
    `folders`, the complete runs so far). With `train=False`,
    nothing runs: the complete runs found are returned.
    """
    folders, todo = {}, []
    seeds = arm_seeds()
    for quantizer in FLAGS.quantizers:
        base_dir = baseline_dir(runs_dir, quantizer)
        todo.append(job(fit_args("baseline", quantizer, FLAGS.baseline_seed, None), base_dir))
        folders[(quantizer, "baseline")] = [base_dir]
        for arm in FLAGS.arms:  # the table's order
            if arm != "baseline":
                folders[(quantizer, arm)] = []
        for seed in range(max(seeds.values())):
            for arm in FLAGS.arms:
                if arm == "baseline" or seed >= seeds[arm]:
                    continue
                out = protocols.arm_dir(runs_dir, quantizer, seed, arm)
                todo.append(job(fit_args(arm, quantizer, seed, os.path.join(base_dir, "model.keras")), out,
                                needs=base_dir))
                folders[(quantizer, arm)].append(out)
        for seed in [s for s in range(FLAGS.baseline_seeds) if s != FLAGS.baseline_seed][:FLAGS.baseline_seeds - 1]:
            out = baseline_dir(runs_dir, quantizer, seed)
            todo.append(job(fit_args("baseline", quantizer, seed, None), out))
            folders[(quantizer, "baseline")].append(out)

    def finished():
        return {key: [out for out in outs if complete(out)] for key, outs in folders.items()}

    if train:
        run_jobs(todo, None if on_done is None else lambda j: on_done(j.out, finished()))
    if FLAGS.dry_run:
        return folders
    return finished()


def compared_campaign():
    """(name, rows) of the --compare_to campaign, or None; read before anything trains,
    so that a wrong path fails at once."""
    if not FLAGS.compare_to:
        return None
    if not os.path.isfile(FLAGS.compare_to):
        fail(f"--compare_to {FLAGS.compare_to}: no such file")
    try:
        rows = report.read_results_csv(FLAGS.compare_to)
    except ValueError as e:  # a missing column, or a seed or accuracy that is no number
        fail(f"--compare_to {FLAGS.compare_to}: not a campaign's results.csv: {e}")
    # Named by its runs folder: a run is <runs_dir>/<quantizer>/seed<k>/<arm>.
    runs = {row["run"].rsplit("/", 3)[0] for row in rows if row.get("run", "").count("/") >= 3}
    name = runs.pop() if len(runs) == 1 else os.path.relpath(os.path.abspath(FLAGS.compare_to), ROOT)
    return name, rows


def summarize(folders, results_dir, compare=None):
    """results.csv (one row per run) and results.md (one row per arm, paired differences;
    with `compare`, whether they depend on the baseline)."""
    try:
        rows, lines = report.write_results(folders, results_dir, ROOT, FLAGS.protocol, data_label(), holdout(),
                                           compare)
    except ValueError as e:
        fail(str(e))
    print("\n".join(lines))
    return rows


def figures(folders, results_dir):
    """Fig. 3 analogue and the per-layer flip heatmap, into `results_dir`."""
    several = len(FLAGS.quantizers) != 1
    path = os.path.join(results_dir, "fig3_curves.png")
    report.curves_figure(folders, path, ROOT, f"{data_label()}, binary ResNet-20, protocol {FLAGS.protocol}: "
                         "mean ± std over seeds", quantizer_labels=several)
    print(f"wrote {path}")
    path = os.path.join(results_dir, "flip_heatmap.png")
    if report.flip_heatmap(folders, path, f"Per-layer flip rate, {data_label()}, protocol {FLAGS.protocol}",
                           quantizer_labels=several):
        print(f"wrote {path}")


def sweep(runs_dir, results_dir):
    """LNS accuracy on the validation hold-out against alpha or rho (Figs. 4, 5).

    Every point fine-tunes the campaign's seed-0 baseline with the `lns` arm's
    schedule, once per seed; the hold-out selects each run's epoch and its accuracy
    there is the point's figure (test accuracy at that epoch is in the CSV).
    """
    name, _, values = FLAGS.sweep.partition("=")
    if name not in ("alpha", "rho") or not values:
        fail(f"--sweep must be alpha=v1,v2,... or rho=v1,..., got {FLAGS.sweep!r}")
    try:
        grid = [float(v) for v in values.split(",")]
    except ValueError:
        fail(f"--sweep values must be numbers, got {values!r}")
    if not holdout():
        fail(f"a sweep selects on a hold-out; protocol {FLAGS.protocol} has none, "
             "pass --validation_size")
    quantizer = FLAGS.quantizers[0]
    base_dir = baseline_dir(runs_dir, quantizer)
    run_fit(fit_args("baseline", quantizer, FLAGS.baseline_seed, None), base_dir)
    points = []
    for value in grid:
        runs = []
        for seed in range(FLAGS.seeds):
            out = protocols.sweep_dir(runs_dir, quantizer, seed, name, value, FLAGS.alpha, FLAGS.rho)
            extra = {name: value, **({"alpha": FLAGS.alpha} if name == "rho" else {})}
            run_fit(fit_args("lns", quantizer, seed, os.path.join(base_dir, "model.keras"), extra), out)
            if not FLAGS.dry_run:
                runs.append(report.run_row(out, ROOT))
        points.append((value, *mean_std([100 * r["best_val_accuracy"] for r in runs]),
                       *mean_std([100 * r["accuracy"] for r in runs]), len(runs)))
    if FLAGS.dry_run:
        return
    # The reference the paper's figures draw: plain fine-tuning of the same
    # baseline with the same schedule and seeds, selected on the same hold-out.
    finetune = [protocols.arm_dir(runs_dir, quantizer, seed, "finetune") for seed in range(FLAGS.seeds)]
    finetune = [100 * report.run_row(out, ROOT)["best_val_accuracy"] for out in finetune if complete(out)]
    reference = mean_std(finetune)[0] if finetune else None
    os.makedirs(results_dir, exist_ok=True)
    report.sweep_csv(name, points, os.path.join(results_dir, f"sweep_{name}.csv"))
    if FLAGS.figures:
        fixed = f"ρ = {FLAGS.rho:g}" if name == "alpha" else f"α = {FLAGS.alpha:g}"
        report.sweep_figure(name, points, os.path.join(results_dir, f"sweep_{name}.png"),
                            f"{data_label()}, {holdout()}-image hold-out\nprotocol {FLAGS.protocol}, {fixed}",
                            FLAGS.seeds, (reference, len(finetune)) if finetune else None)
    print(f"sweep {name}: " + ", ".join(f"{v:g}: {m:.2f}±{s:.2f}" for v, m, s, *_ in points))
    if finetune:
        print(f"finetune reference: {reference:.2f} (mean over {report.seeds_label(len(finetune))})")


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    unknown = set(FLAGS.arms) - set(ARMS)
    if unknown:
        fail(f"unknown arms {sorted(unknown)}; choose from {list(ARMS)}")
    runs_dir = FLAGS.runs_dir or os.path.join(ROOT, "runs", FLAGS.protocol)
    results_dir = FLAGS.results_dir or os.path.join(runs_dir, "results")
    if FLAGS.sweep:
        sweep(runs_dir, results_dir)
        return
    compare = compared_campaign()

    def report_all(folders):
        summarize(folders, results_dir, compare)
        if FLAGS.figures:
            figures(folders, results_dir)

    def after_run(out, folders):
        """The report of the runs complete so far, then --after_run; a failure of
        either is printed and the campaign goes on (its runs matter more)."""
        try:
            report_all(folders)
        except (Exception, SystemExit) as e:  # summarize fails with SystemExit
            print(f"report not regenerated after {out}: {e}", flush=True)
        if FLAGS.after_run:
            result = subprocess.run(FLAGS.after_run, shell=True, cwd=ROOT, env={**os.environ, "RUN_DIR": out})
            if result.returncode:
                print(f"--after_run exited {result.returncode} after {out}", flush=True)

    folders = campaign(runs_dir, on_done=after_run, train=not FLAGS.report_only)
    if FLAGS.dry_run:
        return
    report_all(folders)


if __name__ == "__main__":
    app.run(main)
