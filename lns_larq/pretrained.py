"""Weights that ship with the package, loadable by name as larq-zoo's `weights=`.

```python
model = lns_larq.models.get("resnet20", weights="cifar10")      # the baseline
lns = lns_larq.models.get("resnet20_lns", weights="cifar10")    # after LNS fine-tuning
images = lns_larq.pretrained.preprocess(uint8_images)           # as training normalised them
probabilities = tf.nn.softmax(model(images))
```

The LNS model's mapping networks are training-only: what ships is its inference
network, the base architecture holding the binary weights the mappings produced
(`lns_larq.export.bake`), so it predicts exactly what the fine-tuned LNS model
predicted and converts with LCE. Each file's SHA-256 is checked on every load.
Accuracy, data and the command behind each file: `PRETRAINED` and
`lns_larq/weights/README.md`.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")

# Per-channel mean and std (0-255 scale) of the training split of the CIFAR-10
# JPEG-q75 copy (../shared/data/cifar10), which `lns_larq.data.pipelines` uses.
# (`lns_larq.data.channel_stats`, float32 values written out exactly.)
CIFAR10_JPEG_MEAN = (125.26884460449219, 122.93302154541016, 113.86283874511719)
CIFAR10_JPEG_STD = (62.534061431884766, 61.90929412841797, 66.46033477783203)


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """One shipped weights file.

    # Arguments
        file: Name in `lns_larq/weights/`.
        sha256: Hex digest the file must have.
        options: Builder options the weights need (e.g. `quantizer="dorefa"`).
        test_accuracy: Top-1 accuracy on the data's whole test split (a fraction).
        first_1000_accuracy: Top-1 accuracy on its first 1,000 test images.
        data: The data trained and tested on.
        command: The command that produced the weights.
        holdout_accuracy: Top-1 accuracy on the training images the run held out
            to select its epoch (a fraction), or None without a hold-out.
        difference: For weights fine-tuned from another shipped entry, that
            entry's key (`"to"`) and this entry's test and hold-out accuracy minus
            its (`"test_accuracy"`, `"holdout_accuracy"`, fractions), stated even
            when negative (`lns_larq.shipping.state_difference`); else None.
        previous: The weights that shipped under this name before, newest first:
            each one's `file`, `sha256`, `test_accuracy`, `holdout_accuracy`,
            `command`, the date it was replaced (`replaced`) and why (`why`), so
            that a user holding an older file can tell it by its SHA-256 and see
            what changed (`lns_larq.shipping.save`).
    """

    file: str
    sha256: str
    options: dict
    test_accuracy: float
    first_1000_accuracy: float
    data: str
    command: str
    holdout_accuracy: float | None = None
    difference: dict | None = None
    previous: list = dataclasses.field(default_factory=list)

    @property
    def path(self) -> str:
        return os.path.join(WEIGHTS_DIR, self.file)


MANIFEST = "manifest.json"
PRETRAINED = {}  # (model name, weights name) -> Pretrained, from WEIGHTS_DIR/manifest.json


def read_manifest(directory: str) -> dict:
    """The manifest in `directory`: `{"<model>/<weights>": Pretrained fields}`, empty if none."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def register(name: str, weights: str, entry: Pretrained) -> None:
    """Make `lns_larq.models.get(name, weights=weights)` load `entry`."""
    PRETRAINED[(name, weights)] = entry


def entry(name: str, weights: str) -> Pretrained:
    """The `Pretrained` of model `name` and weights `weights`.

    # Raises
        ValueError: one line naming what exists, if there is no such entry.
    """
    if (name, weights) not in PRETRAINED:
        have = ", ".join(f"{n}(weights={w!r})" for n, w in sorted(PRETRAINED)) or "none"
        raise ValueError(f"No pretrained weights {weights!r} for model {name!r}; available: {have}.")
    return PRETRAINED[(name, weights)]


def sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 digest of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checked_path(item: Pretrained) -> str:
    """`item.path`, after checking that the file exists and has its SHA-256.

    # Raises
        ValueError: one line, if the file is missing or its hash differs.
    """
    if not os.path.isfile(item.path):
        raise ValueError(f"Pretrained weights file {item.path} is missing; reinstall lns-larq.")
    actual = sha256(item.path)
    if actual != item.sha256:
        raise ValueError(
            f"Pretrained weights file {item.path} has SHA-256 {actual[:12]}..., expected "
            f"{item.sha256[:12]}...: the file is corrupt or was replaced."
        )
    return item.path


def build_options(item: Pretrained, options: dict) -> dict:
    """`options` completed with the entry's; a conflicting option is a one-line error."""
    for key, value in item.options.items():
        if key in options and options[key] != value:
            raise ValueError(f"The pretrained weights {item.file} need {key}={value!r}, got {options[key]!r}.")
    return {**options, **item.options}


def preprocess(images: np.ndarray) -> np.ndarray:
    """uint8 (or 0-255 float) CIFAR-10 images, normalised as the shipped models were trained.

    \\[ x' = (x - \\mu_c) / \\sigma_c \\]

    with the per-channel statistics of the JPEG copy's training split.

    ```python
    x = lns_larq.pretrained.preprocess(np.zeros((1, 32, 32, 3), np.uint8))
    ```
    """
    return ((np.asarray(images, np.float32) - np.float32(CIFAR10_JPEG_MEAN)) / np.float32(CIFAR10_JPEG_STD))


for _name_weights, _item in read_manifest(WEIGHTS_DIR).items():
    PRETRAINED[tuple(_name_weights.split("/"))] = Pretrained(**_item)


__all__ = ["MANIFEST", "PRETRAINED", "Pretrained", "checked_path", "entry", "preprocess", "read_manifest", "register",
           "sha256"]
