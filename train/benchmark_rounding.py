"""What rounding a campaign checkpoint costs and saves (`lns_larq.callbacks.round_checkpoint`).

    .venv/bin/python train/benchmark_rounding.py --checkpoint /tmp/ck/backup \
        --pretrained campaigns/short/dorefa/seed0/baseline/model.keras --bits 7,10,12,14,16

For each number of mantissa bits, a copy of the checkpoint (a `BackupAndRestore`
folder of an LNS run) is rounded and restored into `lnsify(--pretrained)`, LNS's
default options, and the script prints how small zlib (git's object store) packs
the model's float tensors (the optimizer's state aside) and how many binary
weights, the signs of the mappings' outputs, differ from those of the checkpoint
as it is (docs/results/README.md, "What a checkpoint costs the repository").
"""

import os
import shutil
import tempfile
import zlib

from absl import app, flags

from cli import fail

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "A BackupAndRestore folder of an LNS run (its backup/).")
flags.DEFINE_string("pretrained", None, "The baseline the run fine-tunes (.keras), to rebuild its LNS network.")
flags.DEFINE_list("bits", ["7", "10", "12", "14", "16"], "Mantissa bits to round to, each in [0, 23].")


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    if not FLAGS.checkpoint or not os.path.isdir(FLAGS.checkpoint):
        fail(f"--checkpoint {FLAGS.checkpoint}: no such folder")
    if not FLAGS.pretrained or not os.path.isfile(FLAGS.pretrained):
        fail(f"--pretrained {FLAGS.pretrained}: no such file")
    try:
        bits = [int(b) for b in FLAGS.bits]
    except ValueError:
        fail(f"--bits {','.join(FLAGS.bits)}: not integers")
    if any(not 0 <= b <= 23 for b in bits):
        fail(f"--bits {','.join(FLAGS.bits)}: each must be in [0, 23]")

    import lns_larq  # isort: skip  (Keras 2 before TensorFlow)
    import numpy as np
    import tensorflow as tf

    from lns_larq import callbacks
    from lns_larq.keras_utils import load_model

    if callbacks.newest_checkpoint(FLAGS.checkpoint) is None:
        fail(f"--checkpoint {FLAGS.checkpoint}: no BackupAndRestore checkpoint in it")
    # One LNS network: each measurement restores every one of its variables.
    model = lns_larq.lnsify(load_model(FLAGS.pretrained))

    def measure(folder):
        """Packed size (bytes) of the model's float tensors and the binary weights."""
        prefix = callbacks.newest_checkpoint(folder)
        reader = tf.train.load_checkpoint(prefix)
        packed = sum(len(zlib.compress(np.ascontiguousarray(reader.get_tensor(name)).tobytes()))
                     for name, dtype in reader.get_variable_to_dtype_map().items()
                     if dtype == tf.float32 and "optimizer" not in name)
        try:
            tf.train.Checkpoint(model=model).read(prefix).expect_partial().assert_existing_objects_matched()
        except (AssertionError, ValueError) as e:
            fail(f"--checkpoint {FLAGS.checkpoint} is not an LNS run of --pretrained: {str(e).splitlines()[0]}")
        return packed, callbacks.binary_signs(model)

    packed, signs = measure(FLAGS.checkpoint)
    n = sum(s.size for s in signs.values())
    print(f"{'mantissa bits':>13}{'packed MB':>11}{'binary weights flipped':>24}")
    print(f"{'23 (as is)':>13}{packed / 1e6:>11.2f}{0:>15} of {n}")
    with tempfile.TemporaryDirectory() as tmp:
        for b in bits:
            copy = os.path.join(tmp, f"bits{b}")
            shutil.copytree(FLAGS.checkpoint, copy)
            callbacks.round_checkpoint(copy, b)
            packed_b, signs_b = measure(copy)
            flips = sum(int(np.sum(signs[k] != signs_b[k])) for k in signs)
            print(f"{b:>13}{packed_b / 1e6:>11.2f}{flips:>15} of {n} ({100 * flips / n:.3f} %)")


if __name__ == "__main__":
    app.run(main)
