"""Image classification data: CIFAR-10 (tfds, `.npz`, python pickles), demo digits,
and the `tf.data` pipeline of the paper (pad-4 random crop, horizontal flip).

```python
arrays = lns_larq.data.load("cifar10", data_path="../shared/data/cifar10/cifar10_jpegq75.npz")
train, val, test = lns_larq.data.pipelines(arrays, batch_size=128, validation_size=10000)
```
"""

import os
import pickle
import socket
import threading
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

DATASETS = ("cifar10", "digits")

# tensorflow-datasets 4.8 downloads CIFAR-10 from this host (image_classification/
# cifar.py: https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz). Offline, it
# retries for minutes (measured: 3 min 35 s) and ends in a traceback; one check of
# the host with this timeout replaces that by a one-line error within seconds.
TFDS_CIFAR10_HOST = "www.cs.toronto.edu"
DOWNLOAD_CHECK_TIMEOUT_S = 5.0


class DataError(ValueError):
    """A data file is missing, truncated or malformed."""


@dataclass
class Arrays:
    """A dataset in memory: uint8 HWC images and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])


def _check(arrays, source):
    """Validate shapes, dtypes and labels; `source` names the file in errors."""
    for split in ("train", "test"):
        x, y = getattr(arrays, f"x_{split}"), getattr(arrays, f"y_{split}")
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise DataError(f"{source}: x_{split} has shape {x.shape}, expected (N, H, W, C).")
        if x.dtype != np.uint8:
            raise DataError(f"{source}: x_{split} has dtype {x.dtype}, expected uint8.")
        if y.shape != (x.shape[0],):
            raise DataError(
                f"{source}: y_{split} has shape {y.shape}, expected ({x.shape[0]},) to "
                f"match x_{split}."
            )
        if y.size and (y.min() < 0 or y.max() >= arrays.num_classes):
            raise DataError(
                f"{source}: y_{split} has labels outside 0..{arrays.num_classes - 1}."
            )
    if arrays.x_train.shape[1:] != arrays.x_test.shape[1:]:
        raise DataError(f"{source}: train and test images differ in shape.")
    return arrays


def load_npz(path, num_classes=10):
    """Load an `.npz` with `x_train, y_train, x_test, y_test` (uint8 NHWC images)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such data file.")
    try:
        with np.load(path) as f:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
            if missing:
                raise DataError(f"{path}: missing arrays {sorted(missing)}.")
            arrays = Arrays(
                f["x_train"], f["y_train"].astype(np.int64).reshape(-1),
                f["x_test"], f["y_test"].astype(np.int64).reshape(-1),
                num_classes, "cifar10",
            )
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npz file (truncated or corrupt: {e}).") from e
    return _check(arrays, path)


def _unpickle(path):
    if not os.path.isfile(path):
        raise DataError(f"{path}: missing CIFAR-10 batch file.")
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: not a CIFAR-10 python batch (truncated or corrupt: {e}).") from e
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: data has shape {data.shape}, expected (N, 3072).")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar_pickle(folder):
    """Load the official python version, the folder `cifar-10-batches-py`."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no such folder.")
    train = [_unpickle(os.path.join(folder, f"data_batch_{i}")) for i in range(1, 6)]
    x_test, y_test = _unpickle(os.path.join(folder, "test_batch"))
    arrays = Arrays(
        np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
        x_test, y_test, 10, "cifar10",
    )
    return _check(arrays, folder)


def reachable(host, port=443, timeout=None):
    """Whether a TCP connection to `host:port` opens within `timeout` seconds
    (default `DOWNLOAD_CHECK_TIMEOUT_S`), name resolution included; through the
    HTTPS proxy of the environment if one is set.

    The resolver gets its own thread, because `getaddrinfo` takes no timeout and an
    offline machine may wait on its name servers for longer than the whole check.
    """
    timeout = DOWNLOAD_CHECK_TIMEOUT_S if timeout is None else timeout
    proxy = urllib.request.getproxies().get("https")
    if proxy and not urllib.request.proxy_bypass(host):
        parts = urllib.parse.urlsplit(proxy if "//" in proxy else "//" + proxy)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    found = []

    def resolve():
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError):
            pass

    resolver = threading.Thread(target=resolve, daemon=True)
    resolver.start()
    resolver.join(timeout)
    for family, kind, protocol, _, address in list(found):
        try:
            with socket.socket(family, kind, protocol) as connection:
                connection.settimeout(timeout)
                connection.connect(address)
            return True
        except OSError:
            continue
    return False


def load_tfds(data_dir=None):
    """CIFAR-10 through tensorflow-datasets (downloads once into `data_dir`).

    # Raises
        DataError: if the dataset is not prepared in `data_dir` and its download
            host cannot be reached (see `reachable`).
    """
    import tensorflow_datasets as tfds

    if not tfds.builder("cifar10", data_dir=data_dir).data_path.exists() and not reachable(TFDS_CIFAR10_HOST):
        raise DataError(
            f"CIFAR-10 could not be downloaded (no connection to {TFDS_CIFAR10_HOST} within "
            f"{DOWNLOAD_CHECK_TIMEOUT_S:g} s); pass --data_path (an .npz or cifar-10-batches-py "
            "folder) or --data_dir with a prepared copy."
        )
    splits = tfds.as_numpy(
        tfds.load("cifar10", split=["train", "test"], batch_size=-1, as_supervised=True, data_dir=data_dir)
    )
    (x_train, y_train), (x_test, y_test) = splits
    arrays = Arrays(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64), 10, "cifar10")
    return _check(arrays, "tfds:cifar10")


def load_digits(size=32, test_fraction=0.2, seed=0):
    """scikit-learn's bundled 8x8 digits, resized to `size` x `size` x 3: a demo
    dataset that needs no download (1797 images, 10 classes)."""
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    images = (digits.images * (255.0 / 16.0)).astype(np.float32)[..., None]
    images = tf.image.resize(images, (size, size), method="bilinear").numpy()
    images = np.repeat(np.clip(images, 0, 255).astype(np.uint8), 3, axis=-1)
    order = np.random.RandomState(seed).permutation(len(images))
    n_test = int(round(test_fraction * len(images)))
    test, train = order[:n_test], order[n_test:]
    labels = digits.target.astype(np.int64)
    return Arrays(images[train], labels[train], images[test], labels[test], 10, "digits")


def load(dataset="cifar10", data_path=None, data_dir=None):
    """Load `dataset` ("cifar10" or "digits").

    For CIFAR-10, `data_path` is an `.npz` file or a `cifar-10-batches-py` folder;
    without it, tensorflow-datasets loads (and first downloads) it into `data_dir`.
    """
    if dataset == "digits":
        if data_path:
            raise DataError("--data_path is for CIFAR-10; the digits demo is bundled.")
        return load_digits()
    if dataset != "cifar10":
        raise DataError(f"Unknown dataset {dataset!r}; choose one of {DATASETS}.")
    if data_path is None:
        return load_tfds(data_dir)
    if os.path.isdir(data_path):
        return load_cifar_pickle(data_path)
    return load_npz(data_path)


def channel_stats(x, chunk=2500):
    """Per-channel mean and std of images in [0, 255], without a float copy.

    For uint8 images (every loader's), from each channel's histogram of the 256
    values, whose sums are exact integers: the float64 sums' result to the bit.
    """
    channels = x.shape[-1]
    # Histograms: 0.2 s instead of 2.8 s for float64 sums over CIFAR-10's 50,000
    # training images (AMD EPYC Zen 4), paid by every CIFAR-10 run.
    if x.dtype == np.uint8:
        counts = np.zeros((channels, 256), np.int64)
        for i in range(0, len(x), chunk):
            part = x[i : i + chunk].reshape(-1, channels)
            for c in range(channels):
                counts[c] += np.bincount(part[:, c], minlength=256)
        values = np.arange(256, dtype=np.float64)
        total, total_sq = counts @ values, counts @ np.square(values)
    else:
        total = np.zeros(channels)
        total_sq = np.zeros(channels)
        for i in range(0, len(x), chunk):
            part = x[i : i + chunk].astype(np.float64)
            total += part.sum(axis=(0, 1, 2))
            total_sq += np.square(part).sum(axis=(0, 1, 2))
    n = x.shape[0] * x.shape[1] * x.shape[2]
    mean = total / n
    return mean.astype(np.float32), np.sqrt(total_sq / n - mean**2).astype(np.float32)


def split_validation(arrays, validation_size, seed=0):
    """Hold out `validation_size` training images (seeded), as the paper's 10,000.

    `pipelines` always uses seed 0, whatever the run's seed: a fine-tuning run
    must validate on images its pretrained baseline never trained on, and every
    run of a campaign must be selected on the same images.
    """
    if validation_size <= 0:
        return arrays, None
    n = len(arrays.x_train)
    if validation_size >= n:
        raise DataError(f"validation_size {validation_size} must be below the {n} training images.")
    order = np.random.RandomState(seed).permutation(n)
    val, train = order[:validation_size], order[validation_size:]
    train_arrays = Arrays(
        arrays.x_train[train], arrays.y_train[train], arrays.x_test, arrays.y_test,
        arrays.num_classes, arrays.name,
    )
    return train_arrays, (arrays.x_train[val], arrays.y_train[val])


def pipelines(arrays, batch_size=128, validation_size=0, train_subset=0, augment=True, seed=0):
    """`(train, validation, test)` `tf.data` pipelines; `validation` is None when
    `validation_size` is 0.

    Training: shuffled every epoch, batched, then per image a 4-pixel zero pad +
    random crop to the input size and a random horizontal flip (`augment`, done on
    whole batches), per-channel normalisation with the statistics of the dataset's
    training split; prefetched. Evaluation: normalisation only.
    """
    # Statistics of the whole training split, so that every run on a dataset (any
    # subset or hold-out) feeds a pretrained network the inputs it was trained on.
    mean, std = channel_stats(arrays.x_train)
    # The hold-out is the same for every `seed` (see `split_validation`); the
    # seed only orders the training images.
    arrays, validation = split_validation(arrays, validation_size)
    x_train, y_train = arrays.x_train, arrays.y_train
    if train_subset:
        x_train, y_train = x_train[:train_subset], y_train[:train_subset]
    height, width, _ = arrays.input_shape

    def normalize(x):
        return (tf.cast(x, tf.float32) - mean) / std

    def augment_batch(x, y):
        # Whole batches at once: one pad, one gather per axis and one select
        # replace a pad, crop and flip per image, so that on a 2-core machine the
        # input pipeline leaves the cores to the training step.
        x = tf.cast(x, tf.float32)
        if augment:
            n = tf.shape(x)[0]
            padded = tf.pad(x, [[0, 0], [4, 4], [4, 4], [0, 0]])
            top = tf.random.uniform([n, 1], 0, 9, dtype=tf.int32)  # the 9 x 9 crop offsets of
            left = tf.random.uniform([n, 1], 0, 9, dtype=tf.int32)  # a 4-pixel pad
            rows = top + tf.range(height)[None]
            cols = left + tf.range(width)[None]
            x = tf.gather(padded, rows, axis=1, batch_dims=1)
            x = tf.gather(x, cols, axis=2, batch_dims=1)
            flip = tf.random.uniform([n, 1, 1, 1]) < 0.5
            x = tf.where(flip, tf.reverse(x, axis=[2]), x)
        return normalize(x), y

    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )

    def evaluation(x, y):
        return (
            tf.data.Dataset.from_tensor_slices((x, y))
            .batch(batch_size)
            .map(lambda a, b: (normalize(a), b), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )

    val = evaluation(*validation) if validation is not None else None
    return train, val, evaluation(arrays.x_test, arrays.y_test)


def cifar10_test_images(data_path: str, n: int, validation_size: int = 0,
                        train_subset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` CIFAR-10 test images, normalised as training normalised them.

    Normalisation statistics come from the training images `lns_larq.data.pipelines`
    used (pass the run's `validation_size`/`train_subset`).
    """
    arrays = load("cifar10", data_path=data_path)
    arrays.x_test, arrays.y_test = arrays.x_test[:n], arrays.y_test[:n]
    _, _, test = pipelines(
        arrays, batch_size=max(n, 1), validation_size=validation_size,
        train_subset=train_subset, augment=False,
    )
    images, labels = next(iter(test))
    return images.numpy(), labels.numpy()
