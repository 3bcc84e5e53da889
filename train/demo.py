"""The main job, end to end on the bundled digits demo (no download, a few minutes):

1. train a binary (DoReFa) ResNet-20 baseline;
2. turn it into an LNS model, warm-start the mapping networks, fine-tune;
3. bake the mapped binary weights and convert with Larq Compute Engine.

    python train/demo.py --output_dir runs/demo

For CIFAR-10, run the same steps with train/fit.py and train/export.py (README).
"""

import os
import sys

import lns_larq  # noqa: F401
from absl import app, flags, logging

from lns_larq import training

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "runs/demo", "Where the two runs and the .tflite go.")
flags.DEFINE_integer("epochs", 4, "Baseline epochs (the LNS fine-tuning runs half as many).", lower_bound=1)


def main(argv):
    logging.set_verbosity(logging.WARNING)
    base_dir = os.path.join(FLAGS.output_dir, "baseline")
    lns_dir = os.path.join(FLAGS.output_dir, "lns")
    common = dict(dataset="digits", batch_size=64, verbose=2)
    print("== 1/3 baseline: binary ResNet-20 (DoReFa) on digits")
    base = training.run(training.TrainConfig(
        model="resnet20", quantizer="dorefa", epochs=FLAGS.epochs, lr=0.1, lr_schedule="cosine",
        output_dir=base_dir, command=" ".join(sys.argv), **common))
    print("== 2/3 LNS: warm start + fine-tuning from the baseline")
    lns = training.run(training.TrainConfig(
        model="resnet20_lns", pretrained=os.path.join(base_dir, "model.keras"), alpha=1.0,
        rho_pos=0.005, warmup_epochs=1, epochs=max(1, FLAGS.epochs // 2), lr=0.01,
        output_dir=lns_dir, command=" ".join(sys.argv), **common))
    print("== 3/3 export through Larq Compute Engine")
    import tensorflow as tf

    from lns_larq import export

    tflite_path = os.path.join(FLAGS.output_dir, "resnet20_lns.tflite")
    report = export.export_tflite(tf.keras.models.load_model(lns["model_path"]), tflite_path)
    print(f"\nbaseline test accuracy {base['test_accuracy']:.4f}  ({base_dir})")
    print(f"LNS      test accuracy {lns['test_accuracy']:.4f}  warm-start agreement "
          f"{lns['warmup']['agreement']:.4f}  ({lns_dir})")
    print(f"exported {tflite_path}:")
    print(report.table())
    print(f"outputs in {FLAGS.output_dir}: baseline/ and lns/ (model.keras, log.csv, metrics.json, "
          "tensorboard/), resnet20_lns.tflite")


if __name__ == "__main__":
    app.run(main)
