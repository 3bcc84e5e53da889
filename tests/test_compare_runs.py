"""train/compare_runs.py: runs of one schedule side by side at equal epochs."""

import os
import subprocess
import sys

import pytest

from .conftest import ROOT, load_script

SCRIPT = os.path.join(ROOT, "train", "compare_runs.py")


def _log(folder, accuracies, holdouts):
    folder.mkdir(parents=True)
    lines = ["epoch,accuracy,lr,val_accuracy,test_accuracy"]
    lines += [f"{e},{a},{0.1 - 0.001 * e},{h},0.5" for e, (a, h) in enumerate(zip(accuracies, holdouts))]
    (folder / "log.csv").write_text("\n".join(lines) + "\n")
    return str(folder)


def test_each_run_gives_its_training_accuracy_at_the_epoch_and_its_hold_out_averaged_over_the_window(tmp_path):
    compare = load_script("train", "compare_runs.py")
    plain = compare.read_log(_log(tmp_path / "a", [0.1, 0.2, 0.3, 0.4], [0.50, 0.10, 0.30, 0.70]))
    other = compare.read_log(_log(tmp_path / "b", [0.5, 0.6, 0.7, 0.8], [0.20, 0.40, 0.60, 0.80]))
    lines = compare.equal_epoch_table({"plain": plain, "other": other}, [1, 4], window=2)
    assert lines[0] == "| epoch | lr | plain | other |"
    # Epoch 1 has one epoch to average; epoch 4 averages epochs 3 and 4 (0.30, 0.70 -> 50 %).
    assert lines[2] == "| 1 | 0.1000 | 10.00 / 50.00 | 50.00 / 20.00 |"
    assert lines[3] == "| 4 | 0.0970 | 40.00 / 50.00 | 80.00 / 70.00 |"
    with pytest.raises(ValueError, match="plain has 4 epochs, fewer than 5"):
        compare.equal_epoch_table({"plain": plain}, [5])


def test_the_cli_prints_the_table_and_names_a_bad_run_in_one_line(tmp_path):
    run = _log(tmp_path / "a", [0.1, 0.2, 0.3], [0.4, 0.5, 0.6])

    def cli(*args):
        return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)

    result = cli("--runs", f"plain={run}", "--at_epochs", "3", "--holdout_window", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| 3 | 0.0980 | 30.00 / 50.00 |" in result.stdout
    for args, error in [
        (("--runs", f"plain={tmp_path / 'none'}", "--at_epochs", "3"), f"{tmp_path / 'none'} has no log.csv"),
        (("--runs", run, "--at_epochs", "3"), f"--runs {run}: expected label=folder"),
        (("--runs", f"plain={run}", "--at_epochs", "4"), "plain has 3 epochs, fewer than 4"),
        (("--runs", f"plain={run}", "--at_epochs", "x"), "--at_epochs x: not a list of integers"),
    ]:
        bad = cli(*args)
        assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [f"compare_runs.py: error: {error}"]
