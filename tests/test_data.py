import os
import pickle
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from lns_larq import data

from .conftest import ROOT


def _arrays(n_train=20, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        rng.integers(0, 10, n_train).astype(np.uint8),
        rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        rng.integers(0, 10, n_test).astype(np.uint8),
    )


def test_load_npz_layout(tmp_path):
    x_train, y_train, x_test, y_test = _arrays()
    path = tmp_path / "c.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    arrays = data.load("cifar10", data_path=str(path))
    np.testing.assert_array_equal(arrays.x_train, x_train)
    np.testing.assert_array_equal(arrays.y_test, y_test)
    assert arrays.input_shape == (32, 32, 3) and arrays.num_classes == 10


def test_load_pickle_layout(tmp_path):
    """The official cifar-10-batches-py folder: CHW rows of 3072 bytes."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = []
    for i, name in enumerate([*(f"data_batch_{j}" for j in range(1, 6)), "test_batch"]):
        x, y, _, _ = _arrays(n_train=4, seed=i)
        rows = x.transpose(0, 3, 1, 2).reshape(4, 3072)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rows, b"labels": [int(v) for v in y]}, f)
        batches.append((x, y))
    arrays = data.load("cifar10", data_path=str(folder))
    assert arrays.x_train.shape == (20, 32, 32, 3) and arrays.x_test.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(arrays.x_train[:4], batches[0][0])
    np.testing.assert_array_equal(arrays.x_test, batches[5][0])
    np.testing.assert_array_equal(arrays.y_train[4:8], batches[1][1])


def test_truncated_npz_names_the_file(tmp_path):
    x_train, y_train, x_test, y_test = _arrays()
    good = tmp_path / "good.npz"
    np.savez(good, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    with pytest.raises(data.DataError, match="truncated.npz"):
        data.load("cifar10", data_path=str(bad))


@pytest.mark.parametrize(
    "arrays,message",
    [
        (dict(x_train=np.zeros((4, 32, 32, 3), np.uint8), y_train=np.zeros(4)), "missing arrays"),
        (dict(x_train=np.zeros((4, 32, 32, 3), np.uint8), y_train=np.zeros(3),
              x_test=np.zeros((2, 32, 32, 3), np.uint8), y_test=np.zeros(2)), "y_train has shape"),
        (dict(x_train=np.zeros((4, 32, 32, 3), np.float32), y_train=np.zeros(4),
              x_test=np.zeros((2, 32, 32, 3), np.uint8), y_test=np.zeros(2)), "dtype"),
        (dict(x_train=np.zeros((4, 32, 32, 3), np.uint8), y_train=np.full(4, 12),
              x_test=np.zeros((2, 32, 32, 3), np.uint8), y_test=np.zeros(2)), "labels outside"),
    ],
)
def test_malformed_npz(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(data.DataError, match=message):
        data.load("cifar10", data_path=str(path))


def test_missing_file_and_corrupt_pickle(tmp_path):
    with pytest.raises(data.DataError, match="no such data file"):
        data.load("cifar10", data_path=str(tmp_path / "nope.npz"))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(data.DataError, match="data_batch_1"):
        data.load("cifar10", data_path=str(folder))


def test_digits_demo_is_bundled():
    arrays = data.load("digits")
    assert arrays.x_train.shape[1:] == (32, 32, 3) and arrays.x_train.dtype == np.uint8
    assert len(arrays.x_train) + len(arrays.x_test) == 1797
    assert set(np.unique(arrays.y_train)) == set(range(10))


def test_pipeline_normalises_augments_and_holds_out(cifar):
    train, val, test = data.pipelines(cifar, batch_size=256, validation_size=10000, train_subset=2048, seed=3)
    x, y = next(iter(train))
    assert x.shape == (256, 32, 32, 3) and y.shape == (256,)
    # Per-channel normalisation with the training statistics: close to zero mean, unit std.
    xt, _ = next(iter(test))
    assert np.all(np.abs(xt.numpy().mean(axis=(0, 1, 2))) < 0.2)
    assert np.all(np.abs(xt.numpy().std(axis=(0, 1, 2)) - 1) < 0.2)
    assert sum(int(b[1].shape[0]) for b in val) == 10000
    assert sum(int(b[1].shape[0]) for b in train) == 2048
    # Augmentation: the same images come out differently in two epochs.
    first = [b[0].numpy() for b in train.take(1)][0]
    second = [b[0].numpy() for b in train.take(1)][0]
    assert not np.allclose(np.sort(first.ravel()), np.sort(second.ravel()))
    # The hold-out is disjoint from the training images.
    _, held = data.split_validation(cifar, 10000, seed=3)
    order = np.random.RandomState(3).permutation(len(cifar.x_train))
    np.testing.assert_array_equal(held[1], cifar.y_train[order[:10000]])


def test_unknown_dataset():
    with pytest.raises(data.DataError, match="Unknown dataset"):
        data.load("mnist")


def test_hold_out_is_the_same_for_every_seed():
    """A fine-tuning run with any seed validates on the images its seed-0 baseline
    held out, never on images the baseline trained on."""
    n = 60
    x = np.zeros((n, 32, 32, 3), np.uint8)
    x[:, 0, 0, 0] = np.arange(n)  # image i carries i
    x[:, 1, 1, 0] = 255  # so that the channel's std is not 0
    arrays = data.Arrays(x, np.arange(n, dtype=np.uint8) % 10, x[:10], np.zeros(10, np.uint8), 10, "cifar10")
    mean, std = data.channel_stats(x)

    def ids(dataset):
        # Undo the normalisation of the id pixel.
        return {int(round(v)) for batch, _ in dataset for v in batch.numpy()[:, 0, 0, 0] * std[0] + mean[0]}

    held = {}
    for seed in (0, 1, 5):
        train, val, _ = data.pipelines(arrays, batch_size=8, validation_size=20, augment=False, seed=seed)
        held[seed], trained = ids(val), ids(train)
        assert len(held[seed]) == 20 and len(trained) == 40 and not held[seed] & trained
    assert held[0] == held[1] == held[5]


# Offline CIFAR-10 download: the resolver is patched, no test touches the network.

OFFLINE_ERROR = (
    "CIFAR-10 could not be downloaded (no connection to www.cs.toronto.edu within 5 s); pass "
    "--data_path (an .npz or cifar-10-batches-py folder) or --data_dir with a prepared copy."
)


@pytest.fixture
def no_proxy(monkeypatch):
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def _no_name_resolves(*args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def _tfds_must_not_download(monkeypatch):
    import tensorflow_datasets as tfds

    def download(*args, **kwargs):
        pytest.fail("tensorflow-datasets was asked to download CIFAR-10")

    monkeypatch.setattr(tfds, "load", download)


def test_offline_cifar10_download_fails_at_once_in_one_line(tmp_path, monkeypatch, no_proxy):
    monkeypatch.setattr(socket, "getaddrinfo", _no_name_resolves)
    _tfds_must_not_download(monkeypatch)
    start = time.perf_counter()
    with pytest.raises(data.DataError) as error:
        data.load("cifar10", data_dir=str(tmp_path / "tfds"))
    assert str(error.value) == OFFLINE_ERROR
    assert time.perf_counter() - start < 2.0  # no waiting on a name that cannot resolve


def test_a_resolver_that_hangs_is_given_up_after_the_timeout(tmp_path, monkeypatch, no_proxy):
    released = threading.Event()
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: released.wait(60) and [])
    monkeypatch.setattr(data, "DOWNLOAD_CHECK_TIMEOUT_S", 0.5)
    _tfds_must_not_download(monkeypatch)
    start = time.perf_counter()
    try:
        with pytest.raises(data.DataError, match=r"could not be downloaded .* within 0\.5 s"):
            data.load("cifar10", data_dir=str(tmp_path / "tfds"))
        assert 0.5 <= time.perf_counter() - start < 5.0
    finally:
        released.set()


def test_reachable_connects_with_a_timeout(no_proxy):
    """`reachable` on local sockets: a listening port answers, a closed one does not."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert data.reachable("127.0.0.1", port, timeout=2.0)
    assert not data.reachable("127.0.0.1", port, timeout=2.0)  # closed: refused


def test_a_prepared_copy_is_loaded_without_the_check(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    data_dir = str(tmp_path / "tfds")
    builder = tfds.builder("cifar10", data_dir=data_dir)  # a prepared copy's folder and info
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)
    monkeypatch.setattr(data, "reachable", lambda *a, **k: pytest.fail("checked the network"))
    x_train, y_train, x_test, y_test = _arrays()
    monkeypatch.setattr(tfds, "load", lambda *a, **k: "splits")
    monkeypatch.setattr(tfds, "as_numpy", lambda splits: [(x_train, y_train), (x_test, y_test)])
    arrays = data.load("cifar10", data_dir=data_dir)
    np.testing.assert_array_equal(arrays.x_test, x_test)


def test_fit_offline_stops_within_seconds_with_one_line(tmp_path):
    """`train/fit.py --model resnet20 --epochs 1` without --data_path, the name
    resolver failing as it does offline: one line, no traceback, no download."""
    code = (
        "import runpy, socket, sys\n"
        "def offline(*args, **kwargs):\n"
        "    raise socket.gaierror(socket.EAI_NONAME, 'Name or service not known')\n"
        "socket.getaddrinfo = offline\n"
        f"sys.argv = ['fit.py', '--model', 'resnet20', '--epochs', '1', '--data_dir', {str(tmp_path / 'tfds')!r},"
        f" '--output_dir', {str(tmp_path / 'run')!r}]\n"
        # As `python train/fit.py` does: the script's folder first on sys.path.
        f"sys.path.insert(0, {os.path.join(ROOT, 'train')!r})\n"
        f"runpy.run_path({os.path.join(ROOT, 'train', 'fit.py')!r}, run_name='__main__')\n"
    )
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("https_proxy", "all_proxy")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == "fit.py: error: " + OFFLINE_ERROR, result.stderr[-3000:]


def test_channel_stats_are_each_channels_mean_and_std():
    rng = np.random.RandomState(0)
    x = rng.randint(0, 256, size=(7001, 5, 4, 3)).astype(np.uint8)  # chunks of 2,500 and a remainder
    x[..., 2] //= 4  # channels that differ
    floats = x.astype(np.float64)
    expected_mean = floats.mean(axis=(0, 1, 2))
    expected_std = floats.std(axis=(0, 1, 2))
    for images in (x, x.astype(np.float32)):  # uint8 (histograms) and any other dtype
        mean, std = data.channel_stats(images)
        assert mean.dtype == std.dtype == np.float32
        # Both results are float32 roundings of float64 figures: 1e-6 relative is a
        # few float32 ulps, far below a wrong count (1 of 84,012 values: 1e-5).
        np.testing.assert_allclose(mean, expected_mean, rtol=1e-6)
        np.testing.assert_allclose(std, expected_std, rtol=1e-6)
