"""Shipped weights: loadable by name, hash-checked, and as accurate as stated."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from lns_larq import data, export, models, pretrained, shipping
from lns_larq.quantizers import quantized_kernel

from .conftest import CIFAR_NPZ, ROOT

SHIPPED = [("resnet20", "cifar10"), ("resnet20_lns", "cifar10")]


@pytest.fixture(scope="module")
def first_1000():
    arrays = data.load("cifar10", data_path=CIFAR_NPZ)
    return arrays.x_test[:1000], arrays.y_test[:1000].reshape(-1)


def test_preprocess_is_the_training_normalisation(first_1000):
    images, _ = first_1000
    pipeline_images, _ = export.cifar10_test_images(CIFAR_NPZ, 16)
    np.testing.assert_allclose(pretrained.preprocess(images[:16]), pipeline_images, atol=1e-5)


@pytest.mark.parametrize("name,weights", SHIPPED)
def test_shipped_weights_load_by_name_and_reach_their_stated_accuracy(name, weights, first_1000):
    item = pretrained.entry(name, weights)
    model = models.get(name, weights=weights)
    assert model.name == name
    images, labels = first_1000
    predictions = np.argmax(model.predict(pretrained.preprocess(images), batch_size=500, verbose=0), axis=-1)
    accuracy = float(np.mean(predictions == labels))
    # The manifest's figure was measured the same way when the file was written;
    # a different machine may round a few near-tied activations differently.
    assert accuracy == pytest.approx(item.first_1000_accuracy, abs=0.003)
    assert accuracy > 0.75  # a trained network, not a random one (10 %)


def test_lns_weights_are_its_own_binary_weights_not_the_baselines():
    baseline = models.get("resnet20", weights="cifar10")
    lns = models.get("resnet20_lns", weights="cifar10")
    differing, total = 0, 0
    for layer in baseline.layers:
        if getattr(getattr(layer, "kernel_quantizer", None), "precision", None) != 1:
            continue
        ours = quantized_kernel(lns.get_layer(layer.name)).numpy()
        # The baked kernel is +-s, one magnitude per layer (DoReFa's layer scale).
        assert np.unique(np.abs(ours)).size == 1
        differing += int(np.sum(np.sign(ours) != np.sign(quantized_kernel(layer).numpy())))
        total += ours.size
    assert 0 < differing < total  # fine-tuned from the baseline, and changed by it


def test_the_lns_weights_state_their_difference_to_the_baseline_they_fine_tune():
    """Issue 20: the manifest and its README give the shipped LNS weights' test and
    hold-out accuracy minus the shipped baseline's, whatever its sign."""
    manifest = pretrained.read_manifest(pretrained.WEIGHTS_DIR)
    lns, base = manifest["resnet20_lns/cifar10"], manifest["resnet20/cifar10"]
    difference = pretrained.entry("resnet20_lns", "cifar10").difference
    assert difference["to"] == "resnet20/cifar10"
    for figure in ("test_accuracy", "holdout_accuracy"):
        # Fractions of 10,000 images: a stale or wrong figure is off by 1e-4 or more.
        assert difference[figure] == pytest.approx(lns[figure] - base[figure], abs=1e-6)
    with open(os.path.join(pretrained.WEIGHTS_DIR, "README.md")) as f:
        row = next(line for line in f if line.startswith("| `resnet20_lns` |"))
    assert (f"`resnet20/cifar10`: test {100 * difference['test_accuracy']:+.2f}, "
            f"hold-out {100 * difference['holdout_accuracy']:+.2f}") in row


def test_state_difference_subtracts_the_base_entry_and_keeps_a_missing_figure_missing():
    manifest = {"a/x": dict(test_accuracy=0.7795, holdout_accuracy=0.7862),
                "b/x": dict(test_accuracy=0.7806, holdout_accuracy=None)}
    shipping.state_difference(manifest, "a/x", "b/x")
    assert manifest["a/x"]["difference"] == {"to": "b/x", "test_accuracy": -0.0011, "holdout_accuracy": None}
    assert "difference" not in manifest["b/x"]


def test_shipped_files_fit_the_size_budget():
    size = sum(os.path.getsize(pretrained.entry(*key).path) for key in SHIPPED)
    assert size <= 5 * 1024 * 1024


def test_a_corrupt_file_unknown_weights_and_conflicting_options_are_one_line_errors(tmp_path, monkeypatch):
    item = pretrained.entry("resnet20", "cifar10")
    corrupt = tmp_path / item.file
    shutil.copy(item.path, corrupt)
    with open(corrupt, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="SHA-256 .* expected .*corrupt") as error:
        models.get("resnet20", weights="cifar10")
    assert "\n" not in str(error.value)
    os.remove(corrupt)
    with pytest.raises(ValueError, match="is missing"):
        models.get("resnet20", weights="cifar10")
    monkeypatch.undo()
    with pytest.raises(ValueError,
                       match=r"No pretrained weights 'imagenet' for model 'resnet20'; available: .*resnet20_lns"):
        models.get("resnet20", weights="imagenet")
    with pytest.raises(ValueError, match="need quantizer='dorefa', got 'xnor'"):
        models.get("resnet20", weights="cifar10", quantizer="xnor")


def test_save_writes_a_loadable_entry(tmp_path):
    """`shipping.save` (behind train/ship_weights.py) round-trips an LNS model."""
    tf.keras.utils.set_random_seed(0)
    model = models.get("resnet8_lns", quantizer="dorefa")
    arrays = data.load("cifar10", data_path=CIFAR_NPZ)
    images, labels = arrays.x_test[:64], arrays.y_test[:64]
    item = shipping.save(model, "resnet8_lns", "test", "dorefa", images, labels, data="test", command="test",
                         directory=str(tmp_path))
    assert os.path.exists(tmp_path / "manifest.json") and item.sha256 == pretrained.sha256(tmp_path / item.file)
    fresh = models.get("resnet8", quantizer="dorefa")
    fresh.load_weights(str(tmp_path / item.file))
    expected = model.predict(pretrained.preprocess(images), verbose=0)
    np.testing.assert_allclose(fresh.predict(pretrained.preprocess(images), verbose=0), expected, atol=1e-4)
    predictions = np.argmax(expected, -1) == labels.reshape(-1)
    assert item.test_accuracy == pytest.approx(float(predictions.mean()))


def _ship_as_resnet20(model, tmp_path):
    """Ship `model` as resnet20 into `tmp_path`, where other resnet20 weights ship;
    assert it fails in one line and leaves them as they were."""
    (tmp_path / "resnet20_test.weights.h5").write_bytes(b"the shipped weights")
    (tmp_path / "manifest.json").write_text("{}")
    arrays = data.load("cifar10", data_path=CIFAR_NPZ)
    expected = f"^cannot ship {model.name} as resnet20: its weights do not load into resnet20 " + r"\(.+\)$"
    with pytest.raises(ValueError, match=expected) as error:
        shipping.save(model, "resnet20", "test", "dorefa", arrays.x_test[:8], arrays.y_test[:8], data="test",
                      command="test", directory=str(tmp_path))
    assert "\n" not in str(error.value)
    assert sorted(os.listdir(tmp_path)) == ["manifest.json", "resnet20_test.weights.h5"]
    assert (tmp_path / "resnet20_test.weights.h5").read_bytes() == b"the shipped weights"
    assert (tmp_path / "manifest.json").read_text() == "{}"


def test_save_leaves_the_shipped_file_alone_when_the_weights_do_not_fit_the_name(tmp_path):
    """Weights of another architecture raise a one-line error before the shipped
    file changes: resnet20_prelu's, which the .weights.h5 format would load into
    resnet20 without a word (it ignores the PReLUs), and resnet8's."""
    for other in ("resnet20_prelu", "resnet8"):
        _ship_as_resnet20(models.get(other, quantizer="dorefa"), tmp_path)


def test_ship_weights_ships_a_run_only_under_its_own_model_name(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(dict(model="resnet20_prelu", config={})))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train", "ship_weights.py"), "--run", str(run),
                             "--name", "resnet20", "--directory", str(tmp_path / "weights")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and not (tmp_path / "weights").exists()
    assert result.stderr.strip().splitlines()[-1] == (
        f"ship_weights.py: error: {run} trained resnet20_prelu, not resnet20: ship it as --name resnet20_prelu")


def test_replace_keeps_a_record_of_the_weights_it_replaces():
    """Issue 36, item 7: users of the old weights can tell what changed."""
    old = dict(file="r_x.weights.h5", sha256="a" * 64, test_accuracy=0.78, holdout_accuracy=0.79, command="old",
               first_1000_accuracy=0.8, previous=[dict(sha256="0" * 64, why="first")])
    manifest = {"r/x": old}
    new = dict(old, sha256="b" * 64, test_accuracy=0.84, command="new", previous=[dict(sha256="c" * 64)])
    shipping.replace(manifest, "r/x", new, "the paper's protocol")
    entry = manifest["r/x"]
    assert entry["sha256"] == "b" * 64 and entry["test_accuracy"] == 0.84
    record, earlier = entry["previous"]  # the candidate's own history is not kept
    assert {k: record[k] for k in ("file", "sha256", "test_accuracy", "holdout_accuracy", "command", "why")} == dict(
        file="r_x.weights.h5", sha256="a" * 64, test_accuracy=0.78, holdout_accuracy=0.79, command="old",
        why="the paper's protocol")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", record["replaced"]) and earlier == dict(sha256="0" * 64, why="first")
    # The same weights again: nothing replaced, the history stays as it is.
    shipping.replace(manifest, "r/x", dict(new, test_accuracy=0.85), "again")
    assert manifest["r/x"]["previous"] == [record, earlier] and manifest["r/x"]["test_accuracy"] == 0.85


def test_save_over_other_weights_lists_them_in_the_readme(tmp_path):
    tf.keras.utils.set_random_seed(0)
    model = models.get("resnet8", quantizer="dorefa")
    arrays = data.load("cifar10", data_path=CIFAR_NPZ)
    images, labels = arrays.x_test[:64], arrays.y_test[:64]

    def save(why):
        return shipping.save(model, "resnet8", "test", "dorefa", images, labels, data="test", command="cmd",
                             directory=str(tmp_path), why=why)

    first = save(None)
    assert first.previous == [] and "Earlier weights" not in (tmp_path / "README.md").read_text()
    kernel = model.get_layer(index=1).weights[0]
    kernel.assign(-kernel)  # other weights under the same name
    second = save("retrained")
    assert second.sha256 != first.sha256 and second.previous[0]["sha256"] == first.sha256
    assert pretrained.Pretrained(**pretrained.read_manifest(str(tmp_path))["resnet8/test"]) == second
    readme = (tmp_path / "README.md").read_text()
    (row,) = [line for line in readme.split("## Earlier weights")[1].splitlines() if line.startswith("| `resnet8`")]
    assert f"| `{first.sha256}` | {100 * first.test_accuracy:.2f} | – |" in row and "| retrained | `cmd` |" in row


def test_ship_weights_will_not_replace_shipped_weights_without_saying_why(tmp_path):
    manifest = os.path.join(pretrained.WEIGHTS_DIR, "manifest.json")
    before = open(manifest).read()
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train", "ship_weights.py"), "--run", str(tmp_path),
                             "--name", "resnet20"], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith(
        "resnet20/cifar10 already ships in " + pretrained.WEIGHTS_DIR + "; say why it is replaced with --why")
    assert open(manifest).read() == before
