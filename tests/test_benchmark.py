"""`train/benchmark.py`: step times of every model, taken in turns, their medians and
ratios, the CPU named, the JSON written; and a one-line error for bad input.

Tiny models and inputs: the test checks what the script measures and reports, not
how fast anything is.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from .conftest import ROOT, load_script

SCRIPT = os.path.join(ROOT, "train", "benchmark.py")


def _run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_benchmark_times_every_step_and_writes_the_table_as_json(tmp_path):
    out = tmp_path / "bench.json"
    result = _run("--models", "resnet8,resnet8_lns", "--batch_size", "8", "--steps", "20", "--warmup", "1",
                   "--dataset", "digits", "--block", "5",
                  "--output", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    from lns_larq import cpu

    first = result.stdout.splitlines()[0]
    assert first.startswith(f"CPU: {cpu.model_name()}") and " cores, oneDNN o" in first
    report = json.loads(out.read_text())
    assert report["onednn"] is cpu.onednn_enabled() and report["cores"] == cpu.cores()
    base, lns = report["results"]
    assert (base["model"], lns["model"]) == ("resnet8", "resnet8_lns")
    for r in (base, lns):
        steps = np.array(r["train_step_times_s"])
        assert steps.shape == (20,) and np.all(steps > 0)  # one time per step, not one per run
        assert r["train_step_s"]["median"] == pytest.approx(np.median(steps))
        assert r["train_step_s"]["p25"] <= r["train_step_s"]["median"] <= r["train_step_s"]["p75"]
        assert r["train_images_per_s"] == pytest.approx(8 / np.median(steps))
        assert len(r["train_step_cpu_times_s"]) == 20
        assert len(r["pipeline_step_times_s"]) == 20  # 4 blocks of 5 on the digits' pipeline
        assert r["pipeline_ratio"]["p25"] <= r["pipeline_ratio"]["median"] <= r["pipeline_ratio"]["p75"]
    assert base["step_ratio"]["median"] == 1.0
    # The ratio is paired round by round; rounds alternate the order of the models.
    ratios = np.array(lns["train_step_times_s"]) / np.array(base["train_step_times_s"])
    assert lns["step_ratio"]["median"] == pytest.approx(np.median(ratios))
    assert f"{lns['step_ratio']['median']:.2f}x" in result.stdout


BAD_INPUT = [
    (["--models", "resnet21"], "benchmark.py: error: unknown models ['resnet21']"),
    (["--input_shape", "32,32"], "benchmark.py: error: --input_shape must be H,W,C, got 32,32"),
    (["--input_shape", "16,16,3", "--dataset", "digits"],
     "benchmark.py: error: the data has images (32, 32, 3) and 10 classes; pass --input_shape"),
]


def test_bad_input_is_one_line(tmp_path):
    # All at once: each case is mostly TensorFlow's import.
    processes = [subprocess.Popen([sys.executable, SCRIPT, *args, "--output", str(tmp_path / "no.json")],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for args, _ in BAD_INPUT]
    for process, (_, message) in zip(processes, BAD_INPUT):
        _, stderr = process.communicate(timeout=600)
        assert process.returncode != 0 and "Traceback" not in stderr
        assert stderr.strip().splitlines()[-1].startswith(message), stderr[-2000:]
    assert not (tmp_path / "no.json").exists()


def test_mapping_conv_formulations_compute_the_same_conv():
    """train/benchmark_mapping_conv.py's two padding-free formulations are the same
    3x3 "same" conv as tf.nn.conv2d: same gradients through three convs."""
    benchmark_mapping_conv = load_script("train", "benchmark_mapping_conv.py")
    results = benchmark_mapping_conv.measure(filters=4, channels=3, hidden=5, rounds=1)
    assert set(results) == {"conv", "dense", "taps"}
    assert results["taps"]["macs"] == 49 and results["dense"]["macs"] == 81
    for r in results.values():
        # float32 sums of at most 9 x 5 products in another order: ~1e-7 relative; a
        # tap in the wrong place is off by tens of percent.
        assert r["gradient_difference"] < 1e-5 and r["median_s"] > 0


def test_benchmark_jobs_compares_one_process_with_pinned_jobs(tmp_path):
    """`train/benchmark_jobs.py`: one process on every core, then two copies pinned to
    one core each; their throughputs add up, and the gain is that sum over the one."""
    out = tmp_path / "jobs.json"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train", "benchmark_jobs.py"), "--models", "resnet8",
                             "--batch_size", "8", "--steps", "3", "--warmup", "1", "--output", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    (row,) = report["results"]
    cores = sorted(os.sched_getaffinity(0))
    assert row["job_cores"] == [cores[:len(cores) // 2], cores[len(cores) // 2:]]
    assert row["jobs_images_per_s"] == pytest.approx(sum(8000 / ms for ms in row["job_step_ms"]))
    assert row["gain"] == pytest.approx(row["jobs_images_per_s"] / row["single_images_per_s"])
    assert row["single_images_per_s"] == pytest.approx(8000 / row["single_step_ms"])
    assert "resnet8" in result.stdout and f"{row['gain']:.2f}x" in result.stdout


def test_benchmark_rounding_prints_the_packed_size_and_flips_per_precision(tmp_path):
    """A checkpoint of an LNS `resnet8` as BackupAndRestore lays it out (backup/chief),
    rounded to 16 and 7 bits: each row's packed size and flip count, and the one-line
    errors. Tiny and untrained: the figures' trend is checked, not their values."""
    import lns_larq  # noqa: F401  # isort: skip  (Keras 2 before TensorFlow)
    import tensorflow as tf

    from lns_larq import models

    base = models.get("resnet8")
    pretrained = str(tmp_path / "base.keras")
    base.save(pretrained)
    model = lns_larq.lnsify(base)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(tmp_path / "backup" / "chief"), 1).save()
    script = os.path.join(ROOT, "train", "benchmark_rounding.py")
    result = subprocess.run([sys.executable, script, "--checkpoint", str(tmp_path / "backup"),
                             "--pretrained", pretrained, "--bits", "16,7"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = result.stdout.strip().splitlines()[-3:]
    # "   23 (as is)   1.23   0 of N", then "   16   1.01   0 of N (0.000 %)": the packed MB.
    as_is, sixteen, seven = float(rows[0].split()[3]), float(rows[1].split()[1]), float(rows[2].split()[1])
    assert rows[0].startswith("23 (as is)".rjust(13)) and " 0 of " in rows[0]
    assert [row.split()[0] for row in rows[1:]] == ["16", "7"]
    assert as_is > sixteen > seven > 0  # fewer bits, smaller
    n = int(rows[0].split(" of ")[1])
    assert n == sum(int(np.prod(layer.kernel.shape)) for layer in lns_larq.lns.lns_layers(model))
    missing = subprocess.run([sys.executable, script, "--checkpoint", str(tmp_path / "none"),
                              "--pretrained", pretrained], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].endswith(f"--checkpoint {tmp_path / 'none'}: no such folder")
