"""train/curve.py: a run's training curve, finished or still in flight."""

import json
import os
import subprocess
import sys

from .conftest import ROOT, load_script

HEADER = "epoch,accuracy,lr,test_accuracy,val_accuracy\n"


def test_a_run_in_flight_is_titled_by_its_folder_and_epochs():
    curve = load_script("train", "curve.py")
    title = curve.default_title("campaigns/paper/baseline/", {}, 157)
    assert title == "campaigns/paper/baseline, in flight: 157 epochs"
    metrics = {"config": {"model": "resnet20", "quantizer": "dorefa", "data_path": "/d/cifar10_jpegq75.npz"},
               "wall_time_s": 5400}
    assert curve.default_title("r", metrics, 90) == "resnet20 (dorefa), cifar10_jpegq75.npz, 90 min"


def test_the_cli_draws_a_run_in_flight_and_rejects_a_folder_without_a_log(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text(HEADER + "".join(f"{e},0.{50 + e},0.1,0.{40 + e},0.{45 + e}\n" for e in range(3)))
    script = os.path.join(ROOT, "train", "curve.py")
    result = subprocess.run([sys.executable, script, "--run", str(run)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    png = (run / "curve.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    (run / "metrics.json").write_text(json.dumps({"validation": "holdout", "config": {"model": "resnet8"}}))
    assert subprocess.run([sys.executable, script, "--run", str(run), "--output", str(tmp_path / "c.png")],
                          cwd=ROOT, capture_output=True, timeout=120).returncode == 0
    assert (tmp_path / "c.png").exists()
    missing = subprocess.run([sys.executable, script, "--run", str(tmp_path / "none")], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].endswith("has no log.csv")
