"""lns_larq.latent and train/latent_weights.py: the latent-weight distribution."""

import os
import subprocess
import sys

import numpy as np
import pytest

import lns_larq  # noqa: F401  # isort: skip  (Keras 2 before TensorFlow)
from lns_larq import latent, models
from lns_larq.keras_utils import is_binarized_conv

from .conftest import ROOT


def _set_latent(model, values):
    """Give the binary convs' latent weights `values` in order (cycled)."""
    flat = np.resize(np.asarray(values, np.float32), latent.latent_weights(model).size)
    start = 0
    for layer in model.layers:
        if is_binarized_conv(layer):
            n = int(np.prod(layer.kernel.shape))
            layer.kernel.latent_variable.assign(flat[start:start + n].reshape(layer.kernel.shape))
            start += n


def test_distribution_of_known_latent_weights():
    model = models.get("resnet8")
    # |W| = 0.005 (near zero), 0.2, 0.5, 0.995 (at the clip, 1 % in), 1.0 (at the clip), with both signs.
    _set_latent(model, [0.005, -0.2, 0.5, -0.995, 1.0, -0.005, 0.2, -0.5, 0.995, -1.0])
    w = latent.latent_weights(model)
    assert w.size == sum(int(np.prod(layer.kernel.shape)) for layer in model.layers if is_binarized_conv(layer))
    stats = latent.distribution(model)
    assert stats["weights"] == w.size
    assert stats["median_abs"] == pytest.approx(0.5)
    assert stats["at_clip"] == pytest.approx(0.4, abs=1e-3)  # 0.995 and 1.0 of each sign
    assert stats["near_zero"] == pytest.approx(0.2, abs=1e-3)
    assert stats["mean_abs"] == pytest.approx(np.mean([0.005, 0.2, 0.5, 0.995, 1.0]), rel=1e-3)
    assert latent.distribution(model, near_zero=0.3)["near_zero"] == pytest.approx(0.4, abs=1e-3)


def test_distribution_reads_latent_not_binary_weights():
    model = models.get("resnet8")
    _set_latent(model, [0.01, -0.04])
    # DoReFa's binary weights would all be +-mean|W| = +-0.025; the latent ones are 0.01 and 0.04.
    stats = latent.distribution(model)
    assert stats["p10_abs"] == pytest.approx(0.01, rel=1e-4) and stats["p90_abs"] == pytest.approx(0.04, rel=1e-4)


def test_a_model_without_binary_layers_is_an_error():
    with pytest.raises(ValueError, match="has no binarized layer"):
        latent.latent_weights(models.get("resnet20_fp"))


def test_latent_weights_cli_prints_a_row_per_model(tmp_path):
    model = models.get("resnet8")
    _set_latent(model, [0.5, -0.5])
    path = str(tmp_path / "m.keras")
    model.save(path)
    script = os.path.join(ROOT, "train", "latent_weights.py")
    result = subprocess.run([sys.executable, script, path], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    row = result.stdout.strip().splitlines()[-1]
    assert row.split()[0] == "0.500" and row.endswith(path)
    missing = subprocess.run([sys.executable, script, str(tmp_path / "none.keras")], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].endswith("no such file: " + str(tmp_path / "none.keras"))
