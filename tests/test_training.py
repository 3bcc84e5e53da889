import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import lns_larq.lns
from lns_larq import cpu, models, training

from .conftest import ROOT

FIT = os.path.join(ROOT, "train", "fit.py")


def _fit(*args, **kwargs):
    return subprocess.run([sys.executable, FIT, *args], capture_output=True, text=True, cwd=ROOT, **kwargs)


def _log(out, name="log.csv"):
    with open(os.path.join(out, name)) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_short_cifar10_run_learns(trained_baseline):
    """3 epochs on 4,000 real CIFAR-10 images: clearly above the 10 % of chance."""
    _, metrics, out = trained_baseline
    # 20 %: chance on the run's 2,000 test images is 10 % +- 0.7 % (binomial SE), so
    # this is 14 SE above it; the run itself lands near 30 % but varies by several
    # points between runs (oneDNN's threaded sums), which a bound at 25 % did not allow.
    assert metrics["test_accuracy"] > 0.2, metrics["test_accuracy"]
    for name in ("model.keras", "best.keras", "last.keras", "log.csv", "metrics.json"):
        assert os.path.exists(os.path.join(out, name)), name
    rows = _log(out)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert float(rows[-1]["ce"]) < float(rows[0]["ce"])
    # Flip rates of the binary weights are logged every epoch, and shrink as lr decays.
    assert 0 < float(rows[-1]["flip_rate"]) < float(rows[0]["flip_rate"])
    with open(os.path.join(out, "metrics.json")) as f:
        saved = json.load(f)
    assert saved["epochs"] == 3 and saved["wall_time_s"] > 0 and saved["config"]["model"] == "resnet20"
    assert saved["cpu"].startswith(cpu.model_name()) and "oneDNN o" in saved["cpu"]


@pytest.mark.slow
def test_lns_fine_tuning_from_pretrained(trained_baseline, cifar_run_path, tmp_path):
    """`--model resnet20_lns --pretrained <baseline> --warmup_epochs`: the warm start
    fits the random mapping to the baseline's signs and reports what it changed;
    fine-tuning logs the key figures per epoch and the per-layer ones in layers.csv."""
    _, base_metrics, base_out = trained_baseline
    out = str(tmp_path / "lns")
    config = training.TrainConfig(
        model="resnet20_lns", pretrained=os.path.join(base_out, "model.keras"), data_path=cifar_run_path,
        alpha=1.0, rho_pos=0.005, warmup_epochs=1, warmup_lr=3e-3, epochs=2, steps_per_epoch=40,
        batch_size=64, train_subset=2000, lr=0.01, lr_schedule="step", lr_boundaries=(1,),
        output_dir=out, verbose=0,
    )
    metrics = training.run(config)
    warm = metrics["lns"]
    # At its noisy labels (sign of the loaded weights) the LNS model is the baseline:
    # the same test images as the baseline's figure (cifar_run_path), so one changed
    # prediction of the 2,000 (5e-4) would fail this.
    assert warm["labels_test_accuracy"] == pytest.approx(base_metrics["test_accuracy"], abs=1e-6)
    # The random mapping (half the signs wrong) was fitted; the report says how far.
    assert warm["agreement"] >= 0.9, warm
    assert warm["accuracy_change"] == pytest.approx(warm["warmup_test_accuracy"] - warm["labels_test_accuracy"])
    assert set(warm["disagreement_per_layer"]) == {layer.name for layer in _lns_layers_of(out)}
    rows = _log(out)
    assert {"aux_loss", "agreement", "flip_rate", "flip_rate_total", "lr"} <= set(rows[0])
    assert not any("/" in key for key in rows[0])  # per-layer figures stay off the progress line
    assert float(rows[1]["lr"]) == pytest.approx(0.001)
    # A random mapping's auxiliary loss is about 2 per layer (18 layers); fitted, it is near its floor.
    assert float(rows[-1]["aux_loss"]) < 5.0, rows[-1]
    with open(os.path.join(out, "layers.csv")) as f:
        layer_rows = list(csv.DictReader(f))
    figures = {(r["epoch"], r["figure"]) for r in layer_rows}
    for epoch in ("0", "1"):
        for figure in ("flip_rate", "disagreement", "saturated", "bound_derivative", "grad_ratio"):
            assert (epoch, figure) in figures
    ratios = [float(r["value"]) for r in layer_rows if r["figure"] == "grad_ratio"]
    derivs = [float(r["value"]) for r in layer_rows if r["figure"] == "bound_derivative"]
    assert len(ratios) == 2 * 18 and all(r > 0 for r in ratios) and min(derivs) > 0.2


def _lns_layers_of(out):
    from lns_larq.lns import lns_layers

    return lns_layers(tf.keras.models.load_model(os.path.join(out, "model.keras"), compile=False))


def test_interrupted_run_resumes(tmp_path):
    """Kill a run after its first epoch; the same command continues from there."""
    out = str(tmp_path / "run")
    args = ["--model", "resnet8", "--dataset", "digits", "--epochs", "3", "--steps_per_epoch", "15",
            "--batch_size", "32", "--lr", "0.05", "--output_dir", out, "--verbose", "0"]
    proc = subprocess.Popen([sys.executable, FIT, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log = os.path.join(out, "log.csv")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(log) and len(_log(out)) >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"
    assert not os.path.exists(os.path.join(out, "metrics.json"))
    done_before = len(_log(out))
    result = _fit(*args, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["epochs_this_invocation"] == 3 - done_before
    assert [int(r["epoch"]) for r in _log(out)] == [0, 1, 2]
    # A complete run is not trained again.
    again = _fit(*args, timeout=600)
    assert again.returncode == 0 and "complete run" in again.stdout


def test_lns_run_resumes_from_its_fine_tuning_checkpoint_alone(tmp_path):
    """What a campaign commits of an LNS run in flight is its fine-tuning checkpoint
    (backup/) and logs, not warmup.weights.h5, best.keras or last.keras: from that
    alone the run resumes where it stopped, without a second warm start."""
    out = str(tmp_path / "lns")
    pretrained = str(tmp_path / "base")
    training.run(training.TrainConfig(dataset="digits", model="resnet8", batch_size=32, epochs=1,
                                      steps_per_epoch=10, output_dir=pretrained, verbose=0))
    args = ["--model", "resnet8_lns", "--dataset", "digits", "--epochs", "3", "--steps_per_epoch", "10",
            "--batch_size", "32", "--lr", "0.01", "--warmup_epochs", "1", "--pretrained",
            os.path.join(pretrained, "model.keras"), "--output_dir", out, "--verbose", "0"]
    proc = subprocess.Popen([sys.executable, FIT, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(os.path.join(out, "log.csv")) and len(_log(out)) >= 1:
            time.sleep(0.5)  # past the epoch's end, where BackupAndRestore writes
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"
    for name in ("warmup.weights.h5", "best.keras", "last.keras"):
        os.remove(os.path.join(out, name))
    with open(os.path.join(out, "warmup_log.csv")) as f:
        warm_start_log = f.read()
    done_before = len(_log(out))
    result = _fit(*args, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["epochs_this_invocation"] == 3 - done_before  # resumed, not restarted
    assert [int(r["epoch"]) for r in _log(out)] == [0, 1, 2]
    with open(os.path.join(out, "warmup_log.csv")) as f:
        assert f.read() == warm_start_log  # no second warm start
    assert not os.path.exists(os.path.join(out, "stale"))  # nor its logs set aside
    with open(os.path.join(out, "warmup.json")) as f:
        assert metrics["lns"] == json.load(f)  # the warm start's report, kept


@pytest.mark.parametrize("backup", ["none", "state file only"])
def test_logs_without_their_checkpoint_are_set_aside_not_appended_to(tmp_path, capsys, backup):
    """A run folder with logs but no `backup/` (copied without its checkpoint), or a
    `backup/` whose state file names a checkpoint that is not there (a commit that
    missed it): the run starts again from epoch 0 and its log holds that run's
    epochs only; the old logs are kept, byte for byte, in stale/1/."""
    out = tmp_path / "run"
    out.mkdir()
    if backup == "state file only":
        (out / "backup" / "chief").mkdir(parents=True)
        (out / "backup" / "chief" / "checkpoint").write_text(
            'model_checkpoint_path: "ckpt-26"\nall_model_checkpoint_paths: "ckpt-26"\n')
    old_log = "epoch,accuracy,val_accuracy\n0,0.5,0.99\n1,0.6,0.98\n"
    (out / "log.csv").write_text(old_log)
    (out / "elapsed.json").write_text('{"seconds": 86400.0}')
    metrics = training.run(training.TrainConfig(dataset="digits", model="resnet8", batch_size=32, epochs=1,
                                                steps_per_epoch=5, validation_size=200, output_dir=str(out),
                                                verbose=0))
    assert [int(r["epoch"]) for r in _log(str(out))] == [0]
    assert (out / "stale" / "1" / "log.csv").read_text() == old_log
    if backup == "state file only":  # kept too, out of BackupAndRestore's way
        assert (out / "stale" / "1" / "backup" / "chief" / "checkpoint").exists()
    assert (out / "stale" / "1" / "elapsed.json").exists()
    assert metrics["wall_time_s"] < 86400  # not counting the stale run's time
    assert metrics["best_val_accuracy"] < 0.99  # nor selecting its epochs
    assert "stale" in capsys.readouterr().out


def test_epochs_zero_evaluates_the_pretrained_model(tmp_path):
    """`--epochs 0 --pretrained M`: an evaluate-only run with M's test metrics."""
    first = str(tmp_path / "first")
    trained = training.run(training.TrainConfig(dataset="digits", batch_size=32, epochs=1, steps_per_epoch=10,
                                                output_dir=first, verbose=0))
    out = str(tmp_path / "eval")
    result = _fit("--dataset", "digits", "--batch_size", "32", "--verbose", "0", "--epochs", "0",
                  "--pretrained", os.path.join(first, "model.keras"), "--output_dir", out, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["epochs_this_invocation"] == 0
    assert metrics["test_accuracy"] == pytest.approx(trained["test_accuracy"], abs=1e-6)


def _write_corrupt(path):
    path.write_bytes(b"PK\x03\x04 not really a zip")
    return str(path)


@pytest.mark.parametrize(
    "case,expected",
    [
        (["--epochs", "-1"], "--epochs=-1"),
        (["--optimizer", "adagrad"], "--optimizer"),
        (["--model", "resnet21"], "Unknown model 'resnet21'"),
        (["--model", "resnet20_lns", "--rho", "0.6"], "rho_pos + rho_neg < 1"),
        (["--pretrained", "/nonexistent/model.keras"], "no such model"),
        (["--lr_boundaries", "30,x"], "lr_boundaries"),
        (["--model", "resnet20", "--warmup_epochs", "2"], "warmup_epochs is for LNS models"),
        (["--epochs", "0"], "epochs=0 evaluates a --pretrained model"),
        (["--model", "resnet20_lns", "--loss_input", "logits"], "--loss_input"),
        ("corrupt", "not a readable .npz"),
        ("mismatch", "does not match"),
    ],
)
def test_bad_input_gives_one_clear_error(case, expected, tmp_path):
    args = ["--output_dir", str(tmp_path / "out"), "--dataset", "digits", "--epochs", "1"]
    if case == "corrupt":
        args = ["--output_dir", str(tmp_path / "out"), "--data_path", _write_corrupt(tmp_path / "c.npz")]
    elif case == "mismatch":
        path = str(tmp_path / "five_classes.keras")
        models.get("resnet20", quantizer="dorefa", num_classes=5).save(path)
        args += ["--pretrained", path]
    else:
        args += case
    result = _fit(*args, timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if expected in line]
    assert errors, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not os.path.exists(str(tmp_path / "out" / "log.csv")), "training started"


def test_lr_schedules():
    step = training.TrainConfig(lr=0.01, lr_schedule="step", lr_boundaries=(30, 60, 90), epochs=120)
    assert [training.lr_at(step, e) for e in (0, 29, 30, 60, 119)] == pytest.approx([0.01, 0.01, 1e-3, 1e-4, 1e-5])
    cosine = training.TrainConfig(lr=0.1, lr_schedule="cosine", epochs=10)
    assert training.lr_at(cosine, 0) == pytest.approx(0.1) and training.lr_at(cosine, 5) == pytest.approx(0.05)


@pytest.mark.parametrize("name", ["resnet20", "resnet20_lns"])
def test_fit_traces_its_step_once_with_the_optimizer_state_keras_would_build(name):
    """`build_compiled` creates the optimizer's slots and the metrics' variables
    before `fit`: its training step is traced once (twice without), and the slots
    are the ones Keras builds itself, in the same order (checkpoints load alike)."""
    from lns_larq.keras_utils import build_compiled

    def compiled():
        tf.keras.utils.set_random_seed(0)
        model = models.get(name, stages=(4, 8, 8), blocks=1)
        model.compile(tf.keras.optimizers.Adam(1e-3),
                      tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
        return model

    x = np.random.default_rng(0).standard_normal((8, 32, 32, 3)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(8) % 10)).batch(4)
    lazy, built = compiled(), compiled()
    build_compiled(built, data)
    for model in (lazy, built):
        model.fit(data, epochs=1, verbose=0)
    assert lazy.train_function.experimental_get_tracing_count() == 2  # what build_compiled saves
    assert built.train_function.experimental_get_tracing_count() == 1
    assert [(v.name, v.shape) for v in built.optimizer.variables] == [
        (v.name, v.shape) for v in lazy.optimizer.variables]
    # The same start, the same steps: the same weights.
    for a, b in zip(lazy.get_weights(), built.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_pretrained_weights_into_lns_variant(tmp_path):
    base = models.get("resnet20", quantizer="xnor", stages=(4, 8, 8), blocks=1)
    path = str(tmp_path / "base.weights.h5")
    base.save_weights(path)
    lns = models.get("resnet20_lns", quantizer="xnor", stages=(4, 8, 8), blocks=1)
    training.load_pretrained(path, lns, lambda: models.get("resnet20", quantizer="xnor", stages=(4, 8, 8), blocks=1))
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    # Every weight of the baseline arrived: binarizing to the noisy labels sign(W)
    # (the mapping not yet warm-started), the LNS variant is the baseline network...
    with lns_larq.lns.labels_as_weights(lns):
        np.testing.assert_allclose(base(x, training=False), lns(x, training=False), rtol=1e-5, atol=1e-5)
    # ...while its random mapping, not yet trained, predicts something else.
    assert np.abs(base(x, training=False).numpy() - lns(x, training=False).numpy()).max() > 1e-3
    # A baseline with another weight scale is refused.
    dorefa = models.get("resnet20_lns", quantizer="dorefa", stages=(4, 8, 8), blocks=1)
    with pytest.raises(training.ConfigError, match="weight scale"):
        training.load_pretrained(path, dorefa,
                                 lambda: models.get("resnet20", quantizer="xnor", stages=(4, 8, 8), blocks=1))


def test_a_new_method_is_one_class_and_one_registry_line(tmp_path):
    """A method owns its hooks: the trainer wraps the model, runs `prepare` before
    fit and adds its callbacks, with no branch on the method's name."""
    from lns_larq.methods import Method, unregister

    calls = []

    class Marker(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            calls.append(("epoch", epoch))

    class Tagged(Method):
        suffix = "tagged"
        config_fields = {"tag_seed": "seed"}

        def wrap(self, model, tag_seed):
            calls.append(("wrap", tag_seed))
            return model

        def prepare(self, run):
            calls.append(("prepare", run.sample[0].shape[0]))
            return {"ready": True}

        def callbacks(self, run):
            return [Marker()]

    models.register_method(Tagged())
    try:
        assert "resnet20_tagged" in models.available()
        metrics = training.run(training.TrainConfig(
            model="resnet20_tagged", dataset="digits", epochs=2, steps_per_epoch=2, batch_size=16, seed=7,
            output_dir=str(tmp_path / "run"), verbose=0))
    finally:
        unregister("tagged")
    assert calls == [("wrap", 7), ("prepare", 16), ("epoch", 0), ("epoch", 1)]
    assert metrics["tagged"] == {"ready": True}


def test_a_run_prints_no_library_noise_and_a_short_progress_line(tmp_path):
    """No AutoGraph "please report" warning, no slow-callback warning, no CUDA
    plugin errors, nothing on stderr, and no per-layer figures on the progress
    line (they go to layers.csv). Six warm-start steps from scratch reach the
    step cap: the run says so once, in its warm-start line on stdout."""
    result = _fit("--model", "resnet8_lns", "--dataset", "digits", "--epochs", "1", "--steps_per_epoch", "6",
                  "--batch_size", "32", "--warmup_epochs", "1", "--verbose", "2",
                  "--output_dir", str(tmp_path / "run"), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "AutoGraph could not transform" not in output
    assert "is slow compared to the batch time" not in output
    assert "Unable to register" not in output  # TensorFlow's double CUDA-plugin registration
    # Nothing but the progress bar, its epoch lines and the final report.
    assert not result.stderr.strip(), result.stderr[-2000:]
    warm = [line for line in result.stdout.splitlines() if line.startswith("warm start:")]
    assert len(warm) == 1 and "ran to its step cap" in warm[0] and "give it more steps" in warm[0], warm
    progress = [line for line in output.splitlines() if "val_accuracy" in line]
    assert progress and all("flip_rate/" not in line for line in progress)
    assert "flip_rate:" in progress[-1] and "agreement:" in progress[-1]
    with open(tmp_path / "run" / "layers.csv") as f:
        assert sum(1 for row in csv.DictReader(f) if row["figure"] == "flip_rate") == 6  # ResNet-8


def test_selection_reports_test_accuracy_at_the_holdout_best_epoch(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,val_accuracy,test_accuracy\n0,0.5,0.55\n1,0.7,0.65\n2,0.6,0.75\n")
    assert training._selection(str(log), holdout=True) == dict(
        selected_epoch=2, selected_val_accuracy=0.7, selected_test_accuracy=0.65, best_test_accuracy=0.75)
    # Without a hold-out, validation is the test set: only the test-selected best exists.
    assert training._selection(str(log), holdout=False) == dict(best_test_accuracy=0.7)
