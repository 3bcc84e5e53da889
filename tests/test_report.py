"""The campaign's protocols, statistics and report tables, without training anything."""

import json
import math

import pytest

from lns_larq import protocols, report, stats


def test_t_interval_of_a_hand_computed_case():
    # Mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, s = sqrt(5 / 3);
    # n - 1 = 3 degrees of freedom: t = 3.182; half-width 3.182 * s / sqrt(4).
    mean, half = stats.t_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and half == pytest.approx(3.182 * math.sqrt(5 / 3) / 2)
    assert half == pytest.approx(2.0540, abs=1e-4)
    # Between the table's entries the next lower one (11 -> 10: 2.228); beyond 30, 1.96.
    values = [float(i % 3) for i in range(12)]
    assert stats.t_interval(values)[1] == pytest.approx(2.228 * stats.mean_std(values)[1] / math.sqrt(12))
    values = [float(i % 2) for i in range(40)]
    assert stats.t_interval(values)[1] == pytest.approx(1.96 * stats.mean_std(values)[1] / math.sqrt(40))
    mean, half = stats.t_interval([0.7])
    assert mean == 0.7 and math.isnan(half)
    assert all(math.isnan(v) for v in stats.mean_std([])) and stats.mean_std([3.0]) == (3.0, 0.0)


def test_welch_interval_of_a_hand_computed_case():
    # a: mean 5.5, s^2 = 55/6, s^2/n = 0.91667; b: mean 1, s^2 = 1, s^2/n = 0.33333.
    # Welch-Satterthwaite: 1.25^2 / (0.91667^2 / 9 + 0.33333^2 / 2) = 10.49 -> 10: t = 2.228.
    diff, half = stats.welch_interval([float(i) for i in range(1, 11)], [0.0, 1.0, 2.0])
    assert diff == 4.5 and half == pytest.approx(2.228 * math.sqrt(1.25))
    # Fewer than 1 degree of freedom would have no quantile: the table's first, 12.706.
    diff, half = stats.welch_interval([1.0, 2.0, 3.0, 4.0], [0.0, 2.0])
    assert diff == 1.5 and half == pytest.approx(12.706 * math.sqrt(5 / 12 + 1))
    assert math.isnan(stats.welch_interval([1.0, 2.0], [3.0])[1])
    assert stats.welch_interval([1.0, 1.0], [0.0, 0.0]) == (1.0, 0.0)


def test_baseline_comparison_sets_the_paired_differences_of_two_baselines_side_by_side():
    def rows(runs, baseline_seed):
        # runs: {arm: [(seed, test accuracy, hold-out accuracy)]}
        return [dict(quantizer="dorefa", arm="baseline", seed=baseline_seed, accuracy=0.78, best_val_accuracy=0.79)] + [
            dict(quantizer="dorefa", arm=arm, seed=seed, accuracy=test, best_val_accuracy=holdout)
            for arm, seeds in runs.items() for seed, test, holdout in seeds]

    # Test: here lns - finetune is +1 and +2 points, there 0, -1 and +1. Hold-out: here
    # -1 and 0, there +1, +1 and +2. `lns_gated` is here only: no row.
    here = rows(dict(finetune=[(0, 0.70, 0.80), (1, 0.72, 0.80)], lns=[(0, 0.71, 0.79), (1, 0.74, 0.80)],
                     lns_gated=[(0, 0.70, 0.80)]), 1)
    there = rows(dict(finetune=[(0, 0.70, 0.80), (1, 0.72, 0.80), (2, 0.70, 0.80)],
                      lns=[(0, 0.70, 0.81), (1, 0.71, 0.81), (2, 0.71, 0.82)]), 0)
    lines = report.baseline_comparison(here, there, "campaigns/short")
    assert "campaigns/short's" in lines[2]
    test, holdout = [line for line in lines if line.startswith("| dorefa |")]

    def welch(a, b):
        diff, half = stats.welch_interval(a, b)
        return f"{diff:+.2f} ({diff - half:+.2f}, {diff + half:+.2f}), n=2 and 3"

    assert test == ("| dorefa | lns | test | seed 1, 78.00 % test | +1.50 (-4.85, +7.85), n=2 | seed 0, 78.00 % test | "
                    f"+0.00 (-2.48, +2.48), n=3 | {welch([1.0, 2.0], [0.0, -1.0, 1.0])} |")
    assert holdout.startswith("| dorefa | lns | hold-out | seed 1, 78.00 % test | -0.50 (-6.85, +5.85), n=2 |")
    assert holdout.endswith(f"| +1.33 (-0.10, +2.77), n=3 | {welch([-1.0, 0.0], [1.0, 1.0, 2.0])} |")
    assert welch([-1.0, 0.0], [1.0, 1.0, 2.0]).startswith("-1.83")


def test_fit_args_of_an_lns_run():
    args = protocols.fit_args("short", "lns_gated", "xnor", 1, "runs/b/model.keras",
                              data_path="cifar.npz", alpha=0.5, rho=0.01)
    assert args == [
        "--model=resnet20_lns", "--quantizer=xnor", "--seed=1", "--dataset=cifar10", "--batch_size=128",
        "--optimizer=adam", "--momentum=0.9", "--weight_decay=0.0", "--verbose=2", "--epochs=4", "--lr=0.0005",
        "--lr_schedule=step", "--lr_boundaries=2,3", "--data_path=cifar.npz", "--validation_size=10000",
        "--pretrained=runs/b/model.keras", "--alpha=0.5", "--rho=0.01", "--warmup_epochs=1", "--gated=True",
        "--loss_input=output",
    ]
    # The candidate arms override the campaign's alpha, or add their option.
    candidate = protocols.fit_args("short", "lns_alpha_0.1", "dorefa", 0, "b.keras", alpha=1.0)
    assert "--alpha=0.1" in candidate and "--alpha=1.0" not in candidate and "--warmup_epochs=1" in candidate
    assert "--labels=pretrained" in protocols.fit_args("short", "lns_pretrained_labels", "dorefa", 0, "b.keras")
    assert "--theta_lr=0.1" in protocols.fit_args("short", "lns_theta_lr_0.1", "dorefa", 0, "b.keras")
    baseline = protocols.fit_args("tiny", "baseline", "dorefa", 0, None, dataset="digits", validation_size=0)
    assert "--model=resnet8" in baseline and not any(a.startswith(("--pretrained", "--validation_size",
                                                                    "--data_path")) for a in baseline)


def test_run_folders():
    assert protocols.baseline_dir("runs", "dorefa", 1) == "runs/dorefa/seed1/baseline"
    assert protocols.baseline_dir("runs", "dorefa", baselines_dir="other") == "other/dorefa/seed0/baseline"
    assert protocols.sweep_dir("runs", "dorefa", 0, "alpha", 0.0) == "runs/dorefa/seed0/lns_no_noisy"
    assert protocols.sweep_dir("runs", "dorefa", 0, "rho", 0.005) == "runs/dorefa/seed0/lns"
    assert protocols.sweep_dir("runs", "dorefa", 2, "rho", 0.02) == "runs/dorefa/seed2/lns_rho0.02"


_LOG = "epoch,val_accuracy,test_accuracy,agreement\n0,0.5,0.5,0.99\n"


def _run(folder, seed, accuracy, lns=None, best=None, log=_LOG):
    folder.mkdir(parents=True)
    (folder / "log.csv").write_text(log)
    metrics = dict(config=dict(seed=seed), validation="holdout", epochs=1, wall_time_s=120.0,
                   test_accuracy=accuracy, best_val_accuracy=0.5, selected_epoch=1,
                   selected_test_accuracy=accuracy, best_test_accuracy=best or accuracy)
    if lns:
        metrics["lns"] = lns
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return str(folder)


def test_results_table_pairs_arms_by_seed(tmp_path):
    finetune = [_run(tmp_path / f"s{s}" / "finetune", s, a, best=b) for s, a, b in ((0, 0.70, 0.75), (1, 0.72, 0.76))]
    lns = [_run(tmp_path / f"s{s}" / "lns", s, a, dict(agreement=0.9999, accuracy_change=-0.001), best=b)
           for s, a, b in ((0, 0.71, 0.75), (1, 0.74, 0.78))]
    folders = {("dorefa", "finetune"): finetune, ("dorefa", "lns"): lns}
    rows, lines = report.write_results(folders, str(tmp_path / "results"), str(tmp_path), "short",
                                       "CIFAR-10 (JPEG q75 copy)", 10000)
    assert [r["run"] for r in rows] == ["s0/finetune", "s1/finetune", "s0/lns", "s1/lns"]
    line = next(line for line in lines if line.startswith("| dorefa | lns |"))  # the first table's
    # Differences 1 and 2 points: mean 1.5, s = 0.7071, t(1 df) = 12.706, half-width 6.35.
    assert "| 72.50 ± 2.12 | +1.50 (-4.85, +7.85), n=2 |" in line
    # Best test accuracy, paired too: differences 0 and 2 points, mean 1, s = 1.414, half-width 12.71.
    assert "| 76.50 ± 2.12 | +1.00 (-11.71, +13.71), n=2 |" in line
    assert "| 0.9999, -0.10 | 2 min |" in line
    assert (tmp_path / "results" / "results.md").read_text() == "\n".join(lines) + "\n"
    with pytest.raises(ValueError, match="no complete run"):
        report.write_results({("dorefa", "lns"): []}, str(tmp_path / "empty"), str(tmp_path), "short", "x", 0)


def test_the_paper_protocol_sets_its_table_1_beside_the_papers_both_ways(tmp_path):
    baseline = [_run(tmp_path / "s0" / "baseline", 0, 0.80)]
    finetune = [_run(tmp_path / f"s{s}" / "finetune", s, a, best=b) for s, a, b in ((0, 0.70, 0.75), (1, 0.72, 0.76))]
    lns = [_run(tmp_path / f"s{s}" / "lns", s, a, best=b) for s, a, b in ((0, 0.71, 0.75), (1, 0.74, 0.78))]
    folders = {("dorefa", "baseline"): baseline, ("dorefa", "finetune"): finetune, ("dorefa", "lns"): lns}
    _, lines = report.write_results(folders, str(tmp_path / "results"), str(tmp_path), "paper", "x", 10000)
    table = lines[lines.index("## Table 1 beside the paper's"):]
    table = table[:table.index("## The regime: where each arm starts and ends")]
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| arm")]
    assert rows == [
        # The paper's single baseline figure beside ours, its last epoch.
        "| baseline | 85.06 | – | – | – | 80.00 ± 0.00 | – | 1 |",
        # Best over epochs: max 76, mean 75.5, s 0.71; hold-out-selected: 71 ± 1.41.
        "| finetune | 85.32 (85.26 ± 0.06) | – | 76.00 (75.50 ± 0.71) | – | 71.00 ± 1.41 | – | 2 |",
        # The paper's Δ is its means' (85.56 - 85.26); ours paired, as in the first table.
        "| lns_no_noisy | 85.43 (85.36 ± 0.06) | +0.10 | – | – | – | – | 0 |",
        "| lns | 85.78 (85.56 ± 0.11) | +0.30 | 78.00 (76.50 ± 2.12) | +1.00 (-11.71, +13.71), n=2 | 72.50 ± 2.12 | "
        "+1.50 (-4.85, +7.85), n=2 | 2 |",
    ]
    _, lines = report.write_results(folders, str(tmp_path / "short"), str(tmp_path), "short", "x", 10000)
    assert "## Table 1 beside the paper's" not in lines  # other protocols are not the paper's


def test_regime_table_gives_where_each_arm_starts_and_ends(tmp_path):
    header = "epoch,accuracy,ce,loss,val_accuracy,test_accuracy\n"
    baseline = [_run(tmp_path / "baseline", 0, 0.80, log=header + "0,0.70,0.90,0.90,0.78,0.77\n"
                                                              "1,0.84,0.50,0.50,0.81,0.80\n")]
    finetune = [_run(tmp_path / f"s{s}" / "finetune", s, 0.8, log=header + f"0,0.8{s},0.6{s},0.6{s},0.8,0.79\n"
                                                                        f"1,0.9{s},0.3{s},0.3{s},0.8,0.79\n")
                for s in (0, 2)]
    # An LNS run: `loss` adds its noisy-supervision term, `ce` is the cross-entropy.
    lns = [_run(tmp_path / "s0" / "lns", 0, 0.8, log=header + "0,0.80,0.55,0.95,0.82,0.81\n"
                                                              "1,0.82,0.52,0.92,0.83,0.82\n")]
    lines = report.regime_table({("dorefa", "baseline"): baseline, ("dorefa", "finetune"): finetune,
                                 ("dorefa", "lns"): lns, ("dorefa", "bonn"): []})
    rows = [line for line in lines if line.startswith("| dorefa")]
    assert rows == [
        "| dorefa | baseline | 1 | – | 0.5000 | 84.00 | 81.00 | 80.00 |",
        "| dorefa | finetune | 2 | 0.6100 | 0.3100 | 91.00 | 80.00 | 79.00 |",
        "| dorefa | lns | 1 | 0.5500 | 0.5200 | 82.00 | 83.00 | 82.00 |",
    ]


def _observation_runs(tmp_path, lns_first_ce, lns_flips, lns_last_ce, lns_accuracy, finetune_first=(0.50, 0.51, 0.52)):
    """A baseline and three seeds of `finetune` and `lns`, two fine-tuning epochs each."""
    header = "epoch,accuracy,ce,loss,flip_rate,val_accuracy,test_accuracy\n"
    baseline = [_run(tmp_path / "baseline", 0, 0.85, log=header + "0,0.90,0.40,0.40,0.01,0.86,0.85\n")]
    finetune, lns = [], []
    for seed, first, last, accuracy in zip(range(3), finetune_first, (0.30, 0.31, 0.29), (0.850, 0.852, 0.848)):
        finetune.append(_run(tmp_path / f"s{seed}" / "finetune", seed, accuracy,
                             log=header + f"0,0.9,{first},{first},0.010,0.8,0.8\n1,0.9,{last},{last},0.005,0.8,0.8\n"))
        lns.append(_run(tmp_path / f"s{seed}" / "lns", seed, lns_accuracy[seed],
                        log=header + f"0,0.9,{lns_first_ce[seed]},0.9,{lns_flips[0]},0.8,0.8\n"
                                     f"1,0.9,{lns_last_ce},0.9,{lns_flips[1]},0.8,0.8\n"))
    return {("dorefa", "baseline"): baseline, ("dorefa", "finetune"): finetune, ("dorefa", "lns"): lns}


def test_paper_observations_measure_the_papers_four_claims_paired_by_seed(tmp_path):
    # As the paper describes: fine-tuning's CE jumps by 0.10-0.12 over the baseline's 0.40,
    # LNS's does not (0, +0.01, -0.02); LNS flips fewer weights; fine-tuning ends with the
    # lower CE (0.29-0.31 against 0.35) and the lower test accuracy (by 0.5, 0.6, 0.8 points).
    folders = _observation_runs(tmp_path / "paper", (0.40, 0.41, 0.38), (0.002, 0.001), 0.35, (0.855, 0.858, 0.856))
    _, lines = report.write_results(folders, str(tmp_path / "results"), str(tmp_path), "paper", "x", 10000)
    section = lines[lines.index("## The paper's four observations, measured here"):]
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in section if line.startswith("| (")}
    assert list(rows) == ["(a)", "(b)", "(c)", "(d)"]
    assert [row[-1] for row in rows.values()] == ["holds |"] * 4
    # Rises 0.10, 0.11, 0.12: mean 0.11, s 0.01, half-width 4.303 * 0.01 / sqrt(3) = 0.0248.
    assert "baseline's last (0.4000): finetune +0.1100 (+0.0852, +0.1348), lns -0.0033" in rows["(a)"][2]
    assert "hold-out-selected: +0.63 (+0.25, +1.01), n=3" in rows["(b)"][2]
    assert rows["(c)"][2] == ("mean flip rate of lns below finetune's in 2 of 2 epochs, above in 0 "
                              "(0 of them counting), n=3")
    assert "training 90.00 %, test 85.00 %" in rows["(d)"][2]

    # The opposite: LNS's CE jumps as fine-tuning's does, it flips more in the second
    # epoch, and it ends with the lower training loss and the lower test accuracy.
    folders = _observation_runs(tmp_path / "not", (0.50, 0.51, 0.52), (0.002, 0.006), 0.25, (0.845, 0.846, 0.844))
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[-1]
            for line in report.paper_observations(report.results_rows(folders, str(tmp_path)), folders)
            if line.startswith("| (")}
    assert rows == {
        "(a)": "does not hold: both rise |",
        "(b)": "does not hold: fine-tuning ends higher |",
        "(c)": "does not hold: LNS flips more in 1 epoch |",
        "(d)": "does not hold: fine-tuning's training loss ends higher; fine-tuning's test accuracy ends higher |",
    }

    def verdict_a(finetune_first):
        folders = _observation_runs(tmp_path / str(finetune_first), (0.40, 0.41, 0.38), (0.002, 0.001), 0.35,
                                    (0.855, 0.858, 0.856), finetune_first)
        lines = report.paper_observations(report.results_rows(folders, str(tmp_path)), folders)
        return next(line for line in lines if line.startswith("| (a)")).split(" | ")[-1]

    # Fine-tuning's CE falls (by 0.05-0.07), or moves by -0.05, 0 and +0.10: no rise to speak of.
    assert verdict_a((0.35, 0.34, 0.33)) == "does not hold: fine-tuning's loss falls |"
    assert verdict_a((0.35, 0.40, 0.50)) == "undecided: fine-tuning's rise does not count |"
    assert report.paper_observations([], {})[-1] == "| – | – | no `finetune` / `lns` pair and baseline yet | – |"
