import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import ROOT

REPRODUCE = os.path.join(ROOT, "train", "reproduce.py")


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny_campaign(tmp_path_factory):
    """A tiny campaign on the digits, two runs at once (--jobs 2), killed inside its
    fine-tuning arm after that arm's first epoch, then run again to the end with the
    same command. The sweep
    test reuses its runs (a baseline and the finetune reference) instead of
    training its own: both tests share an xdist group."""
    runs = str(tmp_path_factory.mktemp("tiny_campaign") / "runs")
    # --after_run logs each run that ends, with the results table's rows at that moment.
    hook = f'echo "$RUN_DIR $(($(wc -l < {runs}/results/results.csv) - 1))" >> {runs}/after_run.log'
    command = [sys.executable, REPRODUCE, "--protocol", "tiny", "--dataset", "digits", "--runs_dir", runs,
               "--baseline_seeds", "2", "--jobs", "2", "--after_run", hook]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    log = os.path.join(runs, "dorefa", "seed0", "finetune", "log.csv")
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(log) and len(_rows(log)) >= 1:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    return dict(runs=runs, command=command, killed=proc.returncode, resumed=resumed)


@pytest.mark.xdist_group("tiny_campaign")
def test_tiny_campaign_every_arm_resume_and_skip(tiny_campaign):
    runs, command, result = tiny_campaign["runs"], tiny_campaign["command"], tiny_campaign["resumed"]
    log = os.path.join(runs, "dorefa", "seed0", "finetune", "log.csv")
    assert tiny_campaign["killed"] == -signal.SIGKILL, "the campaign was not interrupted inside the finetune arm"
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "complete, skipped" in result.stdout  # the baseline was not trained again
    with open(os.path.join(runs, "dorefa", "seed0", "finetune", "metrics.json")) as f:
        finetune = json.load(f)
    assert finetune["epochs_this_invocation"] == 1  # resumed, not restarted
    assert [int(r["epoch"]) for r in _rows(log)] == [0, 1]

    results = os.path.join(runs, "results")
    rows = _rows(os.path.join(results, "results.csv"))
    assert {r["arm"] for r in rows} == {"baseline", "finetune", "lns_no_noisy", "lns", "bonn"}
    # Two baselines (seeds 0 and 1), trained after the arms; every arm fine-tunes seed 0's.
    assert sorted(int(r["seed"]) for r in rows if r["arm"] == "baseline") == [0, 1]
    assert all(json.load(open(os.path.join(ROOT, r["run"], "metrics.json")))["config"]["pretrained"].endswith(
        os.path.join("seed0", "baseline", "model.keras")) for r in rows if r["arm"] != "baseline")
    # --jobs 2: every run was pinned to one core, and both cores were used (the
    # seed-1 baseline needs nothing, so it trained beside the seed-0 one); an arm
    # started before its baseline's model.keras existed would have failed the campaign.
    cores = [json.load(open(os.path.join(ROOT, r["run"], "metrics.json")))["cores"] for r in rows]
    assert all(len(c) == 1 for c in cores) and len({c[0] for c in cores}) == 2, cores
    # After every run that ended, the report was regenerated, then --after_run ran
    # once: the k-th run to end saw at least k complete runs in the table (two runs
    # that end in the same second both see both). Every run the resumed invocation
    # trained is there; a run of the first one may have ended as it was killed.
    with open(os.path.join(runs, "after_run.log")) as f:
        ended = [line.split() for line in f]
    outs = [out for out, _ in ended]
    paths = [os.path.normpath(os.path.join(ROOT, r["run"])) for r in rows]
    assert len(outs) == len(set(outs)) and set(outs) <= set(paths)
    assert {p for p in paths if f"complete, skipped: {p}" not in result.stdout} <= set(outs)
    seen = [int(n) for _, n in ended]
    assert all(n >= k for k, n in enumerate(seen, start=1)) and seen == sorted(seen) and seen[-1] == len(rows)
    for r in rows:  # fractions in the CSV, exactly the runs' own figures
        with open(os.path.join(ROOT, r["run"], "metrics.json")) as f:
            run = json.load(f)
        assert float(r["final_test_accuracy"]) == run["test_accuracy"]
        assert float(r["best_test_accuracy"]) == run["best_test_accuracy"]
        assert run["validation"] == "holdout"
        if r["arm"] == "baseline":  # the last epoch, which the arms fine-tune
            assert r["selection"] == "last epoch" and float(r["accuracy"]) == run["test_accuracy"]
            assert int(r["selected_epoch"]) == run["epochs"]
            continue
        # Selected on the hold-out: the test accuracy logged at the best validation epoch.
        assert r["selection"] == "hold-out"
        epochs = _rows(os.path.join(ROOT, r["run"], "log.csv"))
        best = max(epochs, key=lambda e: float(e["val_accuracy"]))
        assert float(r["accuracy"]) == run["selected_test_accuracy"] == float(best["test_accuracy"])
        assert int(r["selected_epoch"]) == run["selected_epoch"] == int(best["epoch"]) + 1
        assert run["best_test_accuracy"] == max(float(e["test_accuracy"]) for e in epochs)
    with open(os.path.join(results, "results.md")) as f:
        table = f.read()
    assert "mean ± std" in table and "95 % t-interval" in table
    # Percentages in the table: the lns row shows 100 x its run's accuracy, and the
    # paired difference to finetune of the same seed.
    lns = next(r for r in rows if r["arm"] == "lns")
    finetune = next(r for r in rows if r["arm"] == "finetune")
    lns_line = next(line for line in table.splitlines() if line.startswith("| dorefa | lns |"))
    assert f"| {100 * float(lns['accuracy']):.2f} ± 0.00 |" in lns_line
    diff = 100 * float(lns["accuracy"]) - 100 * float(finetune["accuracy"])
    assert f"| {diff:+.2f}, n=1 (no interval) |" in lns_line
    assert os.path.getsize(os.path.join(results, "fig3_curves.png")) > 1000
    assert os.path.getsize(os.path.join(results, "flip_heatmap.png")) > 1000

    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("complete, skipped") == 6
    baseline_line = next(line for line in open(os.path.join(results, "results.md")) if "| baseline |" in line)
    assert baseline_line.startswith("| dorefa | baseline | 2 |")


def test_sweep_dry_run_lists_the_grid(tmp_path):
    result = subprocess.run(
        [sys.executable, REPRODUCE, "--protocol", "tiny", "--dataset", "digits", "--runs_dir", str(tmp_path),
         "--sweep", "rho=0,0.01,0.2", "--dry_run"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    commands = [line for line in result.stdout.splitlines() if "fit.py" in line]
    assert len(commands) == 4  # the campaign's baseline and three LNS runs
    assert all("--validation_size=200" in c for c in commands)  # the tiny protocol's hold-out
    assert any("--rho=0.2" in c and "--alpha=1.0" in c for c in commands)
    # Points that are an arm's setting are that arm's runs: alpha = 0 is lns_no_noisy,
    # the default alpha (with the default rho) is lns.
    reuse = subprocess.run(
        [sys.executable, REPRODUCE, "--protocol", "tiny", "--dataset", "digits", "--runs_dir", str(tmp_path),
         "--sweep", "alpha=0,0.5,1", "--dry_run"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    outputs = [line.rsplit("--output_dir=", 1)[1] for line in reuse.stdout.splitlines() if "fit.py" in line]
    assert [os.path.relpath(o, str(tmp_path)) for o in outputs] == [
        os.path.join("dorefa", "seed0", d) for d in ("baseline", "lns_no_noisy", "lns_alpha0.5", "lns")]
    bad = subprocess.run([sys.executable, REPRODUCE, "--sweep", "beta=1"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "--sweep must be" in bad.stderr


@pytest.mark.xdist_group("tiny_campaign")
def test_tiny_sweep_writes_csv_and_figure(tiny_campaign, tmp_path):
    """A real (tiny) rho sweep on the validation hold-out: CSV, Fig. 5 analogue and
    the plain fine-tuning reference the figure draws (the tiny campaign's baseline
    and finetune run; the sweep trains its two points)."""
    runs = tiny_campaign["runs"]
    results = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, REPRODUCE, "--protocol", "tiny", "--dataset", "digits", "--runs_dir", runs,
         "--results_dir", str(results), "--sweep", "rho=0,0.05", "--validation_size", "200"],
        cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.count("complete, skipped") == 1  # the baseline it fine-tunes, not trained again
    rows = _rows(results / "sweep_rho.csv")
    assert [float(r["rho"]) for r in rows] == [0.0, 0.05]
    assert os.path.getsize(results / "sweep_rho.png") > 1000
    with open(os.path.join(runs, "dorefa", "seed0", "lns_rho0.05", "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["validation"] == "holdout" and metrics["config"]["rho_pos"] == 0.05
    # The sweep reports percentages: 100 x the run's best validation accuracy (a fraction).
    assert float(rows[1]["val_accuracy_mean"]) == pytest.approx(100 * metrics["best_val_accuracy"], abs=1e-4)
    with open(os.path.join(runs, "dorefa", "seed0", "finetune", "metrics.json")) as f:
        finetune = json.load(f)
    assert f"finetune reference: {100 * finetune['best_val_accuracy']:.2f} (mean over 1 seed)" in result.stdout


def test_report_gives_a_baseline_its_last_epoch(tmp_path):
    # A finished 3-epoch baseline whose hold-out peaked at epoch 2: the report must
    # give its last epoch's test accuracy and say so, since the arms fine-tune that model.
    out = tmp_path / "runs" / "dorefa" / "seed0" / "baseline"
    out.mkdir(parents=True)
    (out / "log.csv").write_text("epoch,ce,val_accuracy,test_accuracy\n0,1.0,0.5,0.45\n1,0.9,0.7,0.55\n2,0.8,0.6,0.6\n")
    (out / "metrics.json").write_text(json.dumps(dict(
        config=dict(seed=0), validation="holdout", epochs=3, wall_time_s=60.0, test_accuracy=0.6,
        best_val_accuracy=0.7, selected_epoch=2, selected_test_accuracy=0.55, best_test_accuracy=0.6)))
    result = subprocess.run(
        [sys.executable, REPRODUCE, "--protocol", "tiny", "--dataset", "digits", "--arms", "baseline",
         "--runs_dir", str(tmp_path / "runs"), "--results_dir", str(tmp_path / "results"), "--report_only"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = _rows(tmp_path / "results" / "results.csv")
    assert (row["selection"], int(row["selected_epoch"]), float(row["accuracy"])) == ("last epoch", 3, 0.6)
    assert "| dorefa | baseline | 1 | 60.00 ± 0.00 |" in (tmp_path / "results" / "results.md").read_text()


def _dry_run(*args):
    result = subprocess.run([sys.executable, REPRODUCE, "--dry_run", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = {}
    for line in result.stdout.splitlines():
        if "fit.py" in line:
            options = dict(a[2:].split("=", 1) for a in line.split()[2:])
            runs[options["output_dir"]] = options
    return runs


@pytest.mark.parametrize("protocol,epochs", [("medium", 12), ("long", 28)])
def test_medium_and_long_protocols_schedule_and_arms(tmp_path, protocol, epochs):
    """`medium` (12 epochs) and `long` (28: the paper's 120 / 400 of the baseline's 90)
    fine-tune another campaign's baseline at a tenth of the baseline's learning rate,
    x0.1 at 1/4, 1/2 and 3/4 of the epochs, selecting on 10,000 held-out images; the
    LNS arm warm-starts to full agreement (fit.py's default) and `lns_stop_rho` at
    1 - rho overall with no per-layer bound."""
    runs_dir, baselines = str(tmp_path / protocol), str(tmp_path / "short")
    runs = _dry_run("--protocol", protocol, "--runs_dir", runs_dir, "--baselines_dir", baselines,
                    "--arms", "baseline,finetune,lns,lns_stop_rho", "--seeds", "2")
    base = os.path.join(baselines, "dorefa", "seed0", "baseline")
    assert base in runs and runs[base]["epochs"] == "90" and runs[base]["lr"] == "0.005"
    arms = {out: o for out, o in runs.items() if out.startswith(runs_dir)}
    assert sorted(os.path.relpath(out, runs_dir) for out in arms) == sorted(
        os.path.join("dorefa", f"seed{s}", arm) for s in (0, 1) for arm in ("finetune", "lns", "lns_stop_rho"))
    for out, o in arms.items():
        assert int(o["epochs"]) == epochs and float(o["lr"]) == float(runs[base]["lr"]) / 10
        assert o["lr_schedule"] == "step" and o["optimizer"] == "adam"
        assert [int(b) for b in o["lr_boundaries"].split(",")] == [epochs // 4, epochs // 2, 3 * epochs // 4]
        assert o["validation_size"] == "10000" and o["pretrained"] == os.path.join(base, "model.keras")
        arm = os.path.basename(out)
        assert o["model"] == ("resnet20" if arm == "finetune" else "resnet20_lns")
        if arm != "finetune":
            assert o["warmup_epochs"] == "1"
        if arm == "lns":
            assert "warmup_agreement" not in o and "warmup_layer_agreement" not in o
        if arm == "lns_stop_rho":
            assert float(o["warmup_agreement"]) == 0.995 and float(o["warmup_layer_agreement"]) == 0.0


def test_baseline_seed_picks_the_baseline_the_arms_fine_tune(tmp_path):
    """--baseline_seed 1 trains the seed-1 baseline (with seed 1) in its own folder and
    every arm fine-tunes it; without the flag they fine-tune seed 0's (issue 20 item 5:
    does the difference to fine-tuning depend on the baseline?)."""
    runs_dir = str(tmp_path / "short_baseline1")
    runs = _dry_run("--protocol", "short", "--runs_dir", runs_dir, "--arms", "baseline,finetune,lns",
                    "--seeds", "2", "--baseline_seed", "1")
    base = os.path.join(runs_dir, "dorefa", "seed1", "baseline")
    assert runs[base]["seed"] == "1" and runs[base]["epochs"] == "90"
    arms = {out: o for out, o in runs.items() if out != base}
    assert sorted(os.path.relpath(out, runs_dir) for out in arms) == sorted(
        os.path.join("dorefa", f"seed{s}", arm) for s in (0, 1) for arm in ("finetune", "lns"))
    assert {o["pretrained"] for o in arms.values()} == {os.path.join(base, "model.keras")}
    default = _dry_run("--protocol", "short", "--runs_dir", runs_dir, "--arms", "baseline,finetune", "--seeds", "1")
    assert {o["pretrained"] for out, o in default.items() if "pretrained" in o} == {
        os.path.join(runs_dir, "dorefa", "seed0", "baseline", "model.keras")}


def _fake_run(out, seed, accuracy):
    """A complete one-epoch run folder, as fit.py leaves it, of test accuracy `accuracy`."""
    out.mkdir(parents=True)
    (out / "log.csv").write_text(f"epoch,ce,val_accuracy,test_accuracy\n0,1.0,0.5,{accuracy}\n")
    (out / "metrics.json").write_text(json.dumps(dict(
        config=dict(seed=seed), validation="holdout", epochs=1, wall_time_s=60.0, test_accuracy=accuracy,
        best_val_accuracy=0.5, selected_epoch=1, selected_test_accuracy=accuracy, best_test_accuracy=accuracy)))


def test_compare_to_reports_whether_the_difference_depends_on_the_baseline(tmp_path):
    """--compare_to another campaign's results.csv adds the arms' paired differences to
    finetune from both baselines and the Welch interval of their difference; a path
    that is not such a file fails at once, in one line."""
    accuracies = {"seed0": dict(finetune=(0.70, 0.72, 0.70), lns=(0.70, 0.71, 0.71)),
                  "seed1": dict(finetune=(0.70, 0.72), lns=(0.71, 0.74))}
    for baseline_seed, arms in accuracies.items():
        runs = tmp_path / baseline_seed
        _fake_run(runs / "dorefa" / baseline_seed / "baseline", int(baseline_seed[-1]), 0.78)
        for arm, values in arms.items():
            for seed, accuracy in enumerate(values):
                _fake_run(runs / "dorefa" / f"seed{seed}" / arm, seed, accuracy)

    def report_only(baseline_seed, seeds, *extra):
        return subprocess.run(
            [sys.executable, REPRODUCE, "--protocol", "tiny", "--dataset", "digits", "--arms", "baseline,finetune,lns",
             "--runs_dir", str(tmp_path / f"seed{baseline_seed}"), "--baseline_seed", str(baseline_seed),
             "--seeds", str(seeds), "--results_dir", str(tmp_path / f"results{baseline_seed}"), "--report_only",
             "--figures=false", *extra], cwd=ROOT, capture_output=True, text=True, timeout=600)

    assert report_only(0, 3).returncode == 0
    result = report_only(1, 2, "--compare_to", str(tmp_path / "results0" / "results.csv"))
    assert result.returncode == 0, result.stderr[-2000:]
    text = (tmp_path / "results1" / "results.md").read_text()
    assert "## Does Δ to finetune depend on the baseline?" in text
    assert f"fine-tunes {os.path.relpath(tmp_path / 'seed0', ROOT)}'s" in text  # named by its runs folder
    # Here +1 and +2 points (s^2/n = 0.25), there 0, +1 and -1 (s^2/n = 1/3): difference +1.50,
    # Welch's 0.5833^2 / (0.25^2 / 1 + (1/3)^2 / 2) = 2.88 -> 2 degrees of freedom, t = 4.303, half-width 3.29.
    assert ("| dorefa | lns | test | seed 1, 78.00 % test | +1.50 (-4.85, +7.85), n=2 | seed 0, 78.00 % test | "
            "+0.00 (-2.48, +2.48), n=3 | +1.50 (-1.79, +4.79), n=2 and 3 |") in text
    not_results = tmp_path / "seed1" / "dorefa" / "seed0" / "lns" / "log.csv"
    for bad, why in ((tmp_path / "missing.csv", "no such file"), (not_results, "not a campaign's results.csv")):
        result = report_only(1, 2, "--compare_to", str(bad))
        assert result.returncode == 1 and why in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_paper_protocol_with_another_model_and_fewer_seeds_for_one_arm(tmp_path):
    """--model puts another base model (and its _lns variant) under the protocol;
    --arm_seeds gives one arm fewer seeds (issue 36: lns_no_noisy 3, the others 5);
    the arms go seed by seed, each seed's finetune and lns first."""
    runs_dir = str(tmp_path / "paper_prelu")
    command = [sys.executable, REPRODUCE, "--protocol", "paper", "--model", "resnet20_prelu", "--runs_dir", runs_dir,
               "--arms", "baseline,finetune,lns,lns_no_noisy", "--seeds", "5", "--arm_seeds", "lns_no_noisy=3",
               "--dry_run"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    outs = [line.split("--output_dir=")[1] for line in result.stdout.splitlines() if "fit.py" in line]
    expected = ["baseline"] + [f"seed{s}/{arm}" for s in range(5) for arm in ("finetune", "lns", "lns_no_noisy")
                               if arm != "lns_no_noisy" or s < 3]
    base = os.path.join(runs_dir, "dorefa", "seed0", "baseline")
    assert outs == [base] + [os.path.join(runs_dir, "dorefa", e) for e in expected[1:]]
    models = {out: line.split("--model=")[1].split()[0] for out, line in zip(
        outs, [line for line in result.stdout.splitlines() if "fit.py" in line])}
    assert models[base] == "resnet20_prelu" and models[outs[1]] == "resnet20_prelu"
    assert models[outs[2]] == models[outs[3]] == "resnet20_prelu_lns"
    bad = subprocess.run([("bonn=2" if a == "lns_no_noisy=3" else a) for a in command], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == (
        "reproduce.py: error: --arm_seeds takes <arm>=<seeds> of the --arms, seeds >= 1; got 'bonn=2'")
