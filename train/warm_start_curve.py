"""Per-layer disagreement of the LNS warm start, step by step, from trained weights.

    python train/warm_start_curve.py --steps 200 --every 25
    python train/warm_start_curve.py --width 4 --steps 100

Loads the shipped binary ResNet-20 (CIFAR-10), converts it with `lnsify`, and
trains the random mappings on the noisy loss alone (Adam 1e-3, a fixed batch of
8 images, no stop), printing the overall agreement and every layer's
disagreement with sign(W). docs/design.md#the-warm-start gives its figures.
"""

import lns_larq  # noqa: F401  (selects Keras 2 before TensorFlow loads)

# isort: split
import numpy as np
import tensorflow as tf
from absl import app, flags

from lns_larq import lns, models

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 200, "Warm-start steps (no early stop).", lower_bound=1)
flags.DEFINE_integer("every", 25, "Print every this many steps.", lower_bound=1)
flags.DEFINE_float("width", 2.0, "Hidden width of the mappings (LNSQuantizer width).", lower_bound=0)


class _Curve(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps % FLAGS.every == 0:
            per_layer = lns.layer_agreement(self.model)
            cells = " ".join(f"{name}:{1 - a:.4f}" for name, a in per_layer.items())
            print(f"step {self.steps} agreement {lns.agreement(self.model):.5f} disagreement {cells}", flush=True)


def main(argv):
    del argv
    tf.keras.utils.set_random_seed(0)
    model = lns_larq.lnsify(models.get("resnet20", weights="cifar10"), width=FLAGS.width)
    rng = np.random.default_rng(0)  # the noisy loss does not depend on the images
    data = tf.data.Dataset.from_tensors(
        (rng.standard_normal((8, 32, 32, 3)).astype(np.float32), np.zeros(8, np.int64))).repeat()
    lns.warm_start(model, data, epochs=1, steps_per_epoch=FLAGS.steps, stop_agreement=0,
                   callbacks=[_Curve()], verbose=0)


if __name__ == "__main__":
    app.run(main)
