import os

import lns_larq  # noqa: F401  # isort: skip  (Keras 2 before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR_NPZ = os.path.join(ROOT, "..", "shared", "data", "cifar10", "cifar10_jpegq75.npz")


@pytest.fixture(scope="session")
def cifar_path():
    assert os.path.isfile(CIFAR_NPZ), f"the CIFAR-10 copy is missing: {CIFAR_NPZ}"
    return CIFAR_NPZ


@pytest.fixture(scope="session")
def cifar(cifar_path):
    from lns_larq import data

    return data.load("cifar10", data_path=cifar_path)


@pytest.fixture(scope="session")
def trained_baseline(cifar, tmp_path_factory):
    """A DoReFa ResNet-20 trained briefly on 4,000 real CIFAR-10 images, with its
    metrics; shared by the tests that need weights that mean something."""
    from lns_larq import training

    out = str(tmp_path_factory.mktemp("baseline"))
    config = training.TrainConfig(
        model="resnet20", quantizer="dorefa", data_path=CIFAR_NPZ, epochs=3,
        train_subset=4000, lr=0.05, lr_schedule="cosine", batch_size=64,
        output_dir=out, verbose=0,
    )
    metrics = training.run(config)
    model = tf.keras.models.load_model(os.path.join(out, "model.keras"))
    return model, metrics, out


@pytest.fixture(autouse=True)
def _seed():
    tf.keras.utils.set_random_seed(0)
    np.random.seed(0)


# The suite runs on both cores with pytest-xdist (`-n 2 --dist loadgroup`, set in
# pyproject.toml). Tests that share an expensive fixture stay on one worker, so
# that the fixture is built once: the trained CIFAR-10 baseline (session scope),
# and the modules whose module-scoped fixtures train or export a model.
_SHARED_MODULE_FIXTURES = ("test_bonn", "test_evaluate", "test_export")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "trained_baseline" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("cifar_baseline"))
        elif item.module.__name__.rsplit(".", 1)[-1] in _SHARED_MODULE_FIXTURES:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
