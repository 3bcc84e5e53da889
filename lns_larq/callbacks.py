"""Keras callbacks for binary networks: flips of the binary weights (`FlipRate`), test
figures beside a hold-out (`TestAccuracy`), and the per-layer log both write (`LayerLog`);
and helpers for `BackupAndRestore`'s checkpoints (`has_checkpoint`, `newest_checkpoint`; `zero_momentum` and
`round_checkpoint`, which shrink what committing one costs).

The monitor of LNS's mappings is LNS's own: `lns_larq.lns.LNSMonitor`.
"""

import os

import numpy as np
import tensorflow as tf

from lns_larq.keras_utils import all_layers, is_binarized_conv
from lns_larq.quantizers import quantized_kernel


def has_checkpoint(folder: str) -> bool:
    """Whether `folder` (a `BackupAndRestore` folder) holds a checkpoint to resume from:
    a `checkpoint` state file whose newest checkpoint is there. A state file alone,
    its checkpoint lost (a copy or a commit that missed it), is none: restoring from
    it would start the run again over its old logs."""
    return newest_checkpoint(folder) is not None


def newest_checkpoint(folder: str) -> str | None:
    """The prefix of the newest checkpoint in `folder` (a `BackupAndRestore` folder,
    which keeps it in `chief/`), for `tf.train.load_checkpoint` or
    `tf.train.Checkpoint.read`; None if there is none."""
    return next(_newest_checkpoints(folder), None)


def _newest_checkpoints(folder):
    """The prefix of the newest checkpoint of each checkpoint state file under
    `folder` whose checkpoint is there (`BackupAndRestore` keeps one, in `chief/`)."""
    for directory, _, files in os.walk(folder):
        prefix = tf.train.latest_checkpoint(directory) if "checkpoint" in files else None
        if prefix is not None:
            yield prefix


def zero_momentum(folder: str) -> int:
    """Zero the SGD momentum in the newest checkpoint of `folder` (a `BackupAndRestore`
    folder), in place; returns how many tensors it zeroed.

    A checkpoint of momentum SGD holds every trainable weight twice: the weight and its
    momentum. An LNS ResNet-20's is about 20 MB, most of it its mappings'. With the
    momentum at zero the file keeps its size, but zlib (git's object store) packs the
    zeros to nothing, which halves what committing it costs. Resuming from it is a
    resume whose first steps take no momentum: with SGD's 0.9 the velocity is back
    within about 10 steps. The tensors are SGD's `momentums` (found by name in the
    checkpoint's object graph); any other optimizer's state, Adam's for instance, is
    kept as it is, since Adam's bias correction would turn a zeroed second moment
    into outsized steps.

    ```python
    lns_larq.callbacks.zero_momentum("runs/x/backup")  # 65 for a ResNet-20 run with SGD
    ```
    """
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    def momentums(reader):
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        # tf-keras's SGD keeps its velocities in the list `momentums`: the node
        # (optimizer) -> "momentums" -> one child per variable -> its checkpoint key.
        return {
            attribute.checkpoint_key
            for node in graph.nodes for child in node.children if child.local_name == "momentums"
            for slot in graph.nodes[child.node_id].children
            for attribute in graph.nodes[slot.node_id].attributes
        }

    return _rewrite(folder, momentums, np.zeros_like)


def round_mantissa(x: np.ndarray, bits: int = 10) -> np.ndarray:
    """`x` (float32) rounded to nearest with `bits` bits of mantissa, float32's exponent
    kept: 10 bits is float16's precision, 7 bfloat16's. No value changes sign or leaves
    float32's range, and zero stays zero; the relative error is at most 2 ** -(bits + 1)."""
    if not 0 <= bits <= 23:
        raise ValueError(f"bits must be in [0, 23], got {bits}")
    u = np.array(x, np.float32).view(np.uint32)  # a copy, of any shape (0-d included)
    if bits == 23:
        return u.view(np.float32)
    drop = 23 - bits
    # Half the dropped unit added to the bit pattern carries into the kept mantissa
    # (and the exponent) exactly when the dropped bits are at least one half.
    return ((u + np.uint32(1 << (drop - 1))) & ~np.uint32((1 << drop) - 1)).view(np.float32)


def round_checkpoint(folder: str, bits: int = 10) -> int:
    """Round every float32 tensor of the newest checkpoint of `folder` (a
    `BackupAndRestore` folder) to `bits` bits of mantissa (`round_mantissa`), in place;
    returns how many tensors it rounded.

    Trained float32 weights have random low mantissa bits, which zlib (git's object
    store) cannot pack. An LNS ResNet-20's weights and mappings, 10.2 MB, pack to
    9.45 MB as they are, to 6.03 MB at float16's precision (10 bits) and to 4.81 MB
    at bfloat16's (7). A resume from the rounded checkpoint starts from weights moved
    by at most 2 ** -(bits + 1) of themselves. A latent weight keeps its sign, so a
    baseline's or plain fine-tuning's binary weights stay as they are. An LNS
    network's binary weights are its mappings' signs, and those near zero can flip:
    of an LNS ResNet-20's 267,264, 0 and 34 at 10 bits (at most 0.013 %) and 1 and
    283 at 7 bits in the two checkpoints measured (`train/benchmark_rounding.py`,
    docs/results/README.md). The optimizer's state is rounded alike; integer
    tensors (step counters) are left alone.

    ```python
    lns_larq.callbacks.round_checkpoint("runs/x/backup")
    ```
    """
    return _rewrite(folder, lambda reader: {name for name, dtype in reader.get_variable_to_dtype_map().items()
                                            if dtype == tf.float32},
                    lambda value: round_mantissa(value, bits))


def _rewrite(folder: str, select, transform) -> int:
    """Replace the tensors `select(reader)` names in the newest checkpoint of each state
    file under `folder` by `transform(value)`; returns how many. A checkpoint with none
    to replace is left byte for byte."""
    replaced = 0
    for prefix in _newest_checkpoints(folder):
        reader = tf.train.load_checkpoint(prefix)
        keys = select(reader)
        if not keys:
            continue
        dtypes = reader.get_variable_to_dtype_map()
        names = sorted(dtypes)
        tensors = [tf.constant(transform(reader.get_tensor(n)) if n in keys else reader.get_tensor(n), dtypes[n])
                   for n in names]
        # Written beside the original, then moved over it: an interrupted call
        # leaves the original checkpoint whole.
        tmp = prefix + ".rewrite"
        tf.raw_ops.SaveV2(prefix=tmp, tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
        for suffix in (".data-00000-of-00001", ".index"):
            os.replace(tmp + suffix, prefix + suffix)
        replaced += len(keys)
    return replaced


def binary_signs(model: tf.keras.Model) -> dict[str, np.ndarray]:
    """`{layer name: int8 signs of the binary weights}` for every binarized conv."""
    return {
        layer.name: np.sign(quantized_kernel(layer).numpy()).astype(np.int8)
        for layer in all_layers(model)
        if is_binarized_conv(layer)
    }


class LayerLog:
    """Per-layer figures, one row per (epoch, figure, layer), appended to
    `<directory>/layers.csv` and written to TensorBoard under `<directory>/tensorboard/layers`.

    Per-layer figures stay out of the epoch logs, so the progress line shows only
    the run's key figures; the long CSV format survives resumes and new figures.
    """

    def __init__(self, directory):
        self.directory = directory
        self._writer = None

    def write(self, epoch: int, figures: dict[str, dict[str, float]]) -> None:
        """`figures`: `{figure: {layer: value}}` for `epoch` (0-based)."""
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, "layers.csv")
        new = not os.path.exists(path)
        with open(path, "a") as f:
            if new:
                f.write("epoch,figure,layer,value\n")
            for figure, values in figures.items():
                f.writelines(f"{epoch},{figure},{layer},{value:.6g}\n" for layer, value in values.items())
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.directory, "tensorboard", "layers"))
        with self._writer.as_default():
            for figure, values in figures.items():
                for layer, value in values.items():
                    tf.summary.scalar(f"{figure}/{layer}", value, step=epoch)
        self._writer.flush()


class FlipRate(tf.keras.callbacks.Callback):
    """After every epoch, the fraction of binary weights whose sign flipped (Fig. 3c).

    Adds to the epoch logs (and so to the history, `CSVLogger` and `TensorBoard`,
    when this callback comes before them):

    - `flip_rate`: flipped since the previous epoch, over all binarized convs;
    - `flip_rate_total`: differing from the weights when training began.

    The per-layer rates of the epoch are in `layer_figures["flip_rate"]` and, with
    `layer_log_dir`, in its `layers.csv` and TensorBoard (see `LayerLog`).
    The binary weights are those the convs use (for LNS, sign of the mapping's
    prediction, not of the latent weights). Larq's `FlipRatio` metric counts flips
    between consecutive *steps*; the paper's curve is per epoch, hence this callback.
    With `reference_path`, the starting weights are saved there so that a resumed
    run keeps measuring against the true start.

    ```python
    model.fit(data, epochs=3, callbacks=[lns_larq.callbacks.FlipRate()])
    ```
    """

    def __init__(self, reference_path=None, layer_log_dir=None):
        super().__init__()
        self.reference_path = reference_path
        self.layer_log = LayerLog(layer_log_dir) if layer_log_dir else None
        self.layer_figures = {}
        self._previous = None
        self._start = None
        self._first_epoch = False

    def on_train_begin(self, logs=None):
        current = binary_signs(self.model)
        if not current:
            raise ValueError("FlipRate needs a model with binarized QuantConv2D layers.")
        self._previous = current
        self._first_epoch = True
        if self.reference_path and os.path.exists(self.reference_path):
            with np.load(self.reference_path) as f:
                self._start = {k: f[k] for k in f.files}
        else:
            self._start = current
            if self.reference_path:
                np.savez(self.reference_path, **current)

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch:
            # A resumed run's weights are restored by BackupAndRestore in its own
            # on_train_begin, which may come after this one's: the first epoch's
            # flips count from the weights it really starts from.
            self._previous = binary_signs(self.model)
            self._first_epoch = False

    def on_epoch_end(self, epoch, logs=None):
        current = binary_signs(self.model)
        logs = logs if logs is not None else {}
        flipped = flipped_total = size = 0
        per_layer = {}
        for name, signs in current.items():
            changed = int(np.count_nonzero(signs != self._previous[name]))
            flipped += changed
            flipped_total += int(np.count_nonzero(signs != self._start[name]))
            size += signs.size
            per_layer[name] = changed / signs.size
        logs["flip_rate"] = flipped / size
        logs["flip_rate_total"] = flipped_total / size
        self.layer_figures = {"flip_rate": per_layer}
        if self.layer_log:
            self.layer_log.write(epoch, self.layer_figures)
        self._previous = current


class TestAccuracy(tf.keras.callbacks.Callback):
    """After every epoch, the test set's accuracy and loss, as `test_accuracy` and `test_loss`.

    With a validation hold-out, `fit` validates on the hold-out and selects the
    epoch there (`val_accuracy`). Logging the test figures beside it lets one run
    report both the honest figure (test accuracy at the epoch the hold-out
    selects) and the paper's "best" (test-selected) one, without saving a model
    per epoch. Put it before `CSVLogger` and `TensorBoard`.

    ```python
    callback = TestAccuracy(test_dataset)
    model.fit(train, validation_data=holdout, callbacks=[callback, tf.keras.callbacks.CSVLogger("log.csv")])
    ```
    """

    def __init__(self, test):
        super().__init__()
        self.test = test

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        results = self.model.evaluate(self.test, verbose=0, return_dict=True)
        logs["test_accuracy"] = results["accuracy"]
        logs["test_loss"] = results["loss"]
