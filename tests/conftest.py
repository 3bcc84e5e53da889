import importlib.util
import os
import sys

import lns_larq  # noqa: F401  # isort: skip  (Keras 2 before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR_NPZ = os.path.join(ROOT, "..", "shared", "data", "cifar10", "cifar10_jpegq75.npz")


def load_script(*path):
    """The script at ROOT/`path` (e.g. "train", "curve.py") as a module, loaded with its
    folder first on sys.path, as `python train/curve.py` has it (its sibling cli.py
    importable); its `if __name__ == "__main__"` part does not run."""
    folder = os.path.join(ROOT, *path[:-1])
    spec = importlib.util.spec_from_file_location(os.path.splitext(path[-1])[0], os.path.join(folder, path[-1]))
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


@pytest.fixture(scope="session")
def cifar_path():
    assert os.path.isfile(CIFAR_NPZ), f"the CIFAR-10 copy is missing: {CIFAR_NPZ}"
    return CIFAR_NPZ


@pytest.fixture(scope="session")
def cifar(cifar_path):
    from lns_larq import data

    return data.load("cifar10", data_path=cifar_path)


# Test images the runs on real CIFAR-10 evaluate (per epoch and at the end): 2,000
# of the 10,000. Evaluating is most of such a short run's time, and 2,000 images
# measure an accuracy to about +-1 % (binomial standard error at 30 %), ample for
# "clearly above chance" and for comparisons made on the same images.
RUN_TEST_IMAGES = 2000


@pytest.fixture(scope="session")
def cifar_run_path(cifar_path, tmp_path_factory):
    """The CIFAR-10 copy with its whole training split (so the normalisation
    statistics, taken over it, are unchanged) and the first `RUN_TEST_IMAGES` test
    images (about 200 per class), for the training runs of the tests."""
    path = str(tmp_path_factory.mktemp("cifar10_run") / "cifar10_test2000.npz")
    with np.load(cifar_path) as f:
        np.savez(path, x_train=f["x_train"], y_train=f["y_train"],
                 x_test=f["x_test"][:RUN_TEST_IMAGES], y_test=f["y_test"][:RUN_TEST_IMAGES])
    return path


@pytest.fixture(scope="session")
def trained_baseline(cifar_run_path, tmp_path_factory):
    """A DoReFa ResNet-20 trained briefly on 4,000 real CIFAR-10 images, with its
    metrics (on the run's 2,000 test images, `cifar_run_path`); shared by the tests
    that need weights that mean something."""
    from lns_larq import training

    out = str(tmp_path_factory.mktemp("baseline"))
    config = training.TrainConfig(
        model="resnet20", quantizer="dorefa", data_path=cifar_run_path, epochs=3,
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


# The longest work goes first (pyproject.toml's --no-loadscope-reorder keeps this
# order): the baseline's group (its fixture and three tests, the longest unit), then
# the longest single tests, so that no worker starts one of them while the other is
# about to run out of work. The rest keep their collection order.
_LONG_FIRST = (
    "test_reproduce.py::test_tiny_campaign_every_arm_resume_and_skip",
    "test_reproduce.py::test_tiny_sweep_writes_csv_and_figure",
    "test_distribute.py::test_mirrored_fit_checkpoints_and_resumes",
    "test_distribute.py::test_multi_worker_fit_only_the_chief_writes_and_resumes",
    "test_lns.py::test_controlled_task_default_mapping_corrects_flips_and_gated_does_not",
    # Collected last (test_warm_start.py), these two made a 30 s tail on one worker.
    "test_warm_start.py::test_default_warm_start_reproduces_the_pretrained_network",
    "test_warm_start.py::test_stop_at_one_minus_rho_leaves_the_stride_2_convs_behind",
)


def _start_rank(item):
    if "trained_baseline" in getattr(item, "fixturenames", ()):
        return 0
    name = item.nodeid.rsplit("/", 1)[-1]
    return 1 + _LONG_FIRST.index(name) if name in _LONG_FIRST else 1 + len(_LONG_FIRST)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "trained_baseline" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("cifar_baseline"))
        elif item.module.__name__.rsplit(".", 1)[-1] in _SHARED_MODULE_FIXTURES:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    items[:] = sorted(items, key=_start_rank)  # stable: the rest keep their order




class _GroupsReachXdist:
    """Finds the tests whose xdist group did not reach xdist's loadgroup scheduler.

    The scheduler sees a test's group only as an "@<group>" suffix that xdist's
    worker adds to its node id; where the suffix is lost (pytest-xdist 3.8 on pytest
    9.2, pytest-dev/pytest-xdist#1386), nothing fails by itself, but each worker
    builds the shared fixtures itself, minutes of the suite's time.
    """

    lost = []

    @pytest.hookimpl(trylast=True)  # after xdist's worker has added the suffixes
    def pytest_collection_modifyitems(self, config, items):
        if getattr(config.option, "loadgroup", False):  # a worker of --dist loadgroup
            self.lost = [item.nodeid for item in items
                         if any(item.iter_markers("xdist_group")) and "@" not in item.nodeid]


_GROUPS = _GroupsReachXdist()


def pytest_configure(config):
    config.pluginmanager.register(_GROUPS, "groups_reach_xdist")


@pytest.fixture(scope="session", autouse=True)
def _xdist_groups_work():
    # Session-scoped and autouse: checked before any shared fixture is built.
    if _GROUPS.lost:
        pytest.fail(f"pytest-xdist's --dist loadgroup ignored the xdist_group of {len(_GROUPS.lost)} tests "
                    f"(e.g. {_GROUPS.lost[0]}); install the pytest that requirements.txt pins", pytrace=False)
