"""Train a binary network on CIFAR-10, ImageNet (or the bundled digits demo) with Keras fit.

Baseline:   python train/fit.py --model resnet20 --quantizer dorefa \
                --data_path ../shared/data/cifar10/cifar10_jpegq75.npz --epochs 1
LNS:        python train/fit.py --model resnet20_lns --pretrained runs/base/model.keras \
                --alpha 1.0 --rho 0.005 --warmup_epochs 5 --epochs 120 --lr 0.01 \
                --lr_schedule step --lr_boundaries 30,60,90
                (a method's options are flags of the same name: `python train/fit.py --helpfull`)
ImageNet:   python train/fit.py --model resnet18_bireal --quantizer xnor --dataset imagenet2012 \
                --data_dir ~/tensorflow_datasets --manual_dir ~/ilsvrc2012 --strategy mirrored \
                --batch_size 256 --epochs 120 --lr_schedule step --lr_boundaries 70,90,110
                (see docs/imagenet.md; --batch_size is the global batch over all replicas)

Rerunning the same command after a crash or kill resumes from the last completed
epoch. Outputs go to --output_dir (see lns_larq/training.py).
"""

import shlex
import sys

from absl import app, flags, logging

import lns_larq  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from cli import fail
from lns_larq import methods, models, training
from lns_larq.data import DataError

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "resnet20", f"Model name: {', '.join(models.available())}.")
flags.DEFINE_enum("quantizer", "dorefa", ["dorefa", "xnor", "binarynet"],
                  "Baseline weight quantizer: dorefa (layer scale), xnor (channel scale), binarynet (none).")
flags.DEFINE_enum("dataset", "cifar10", list(training.DATASETS),
                  "cifar10, digits (bundled demo, no download), or imagenet2012 (tensorflow-datasets, "
                  "built from the archives in --manual_dir).")
flags.DEFINE_string("data_path", None,
                    "CIFAR-10 .npz file or cifar-10-batches-py folder; default: tensorflow-datasets.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir (download/cache folder).")
flags.DEFINE_string("manual_dir", None, "imagenet2012: folder with ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar "
                    "(default <data_dir>/downloads/manual); needed until the dataset is prepared.")
flags.DEFINE_enum("strategy", "default", list(training.distribute.STRATEGIES),
                  "tf.distribute strategy: default (one device), mirrored (all GPUs of this machine), "
                  "multi_worker (all workers of TF_CONFIG), tpu.")
flags.DEFINE_integer("epochs", 1, "Training epochs (after warm start).", lower_bound=0)
flags.DEFINE_integer("batch_size", 128, "Global batch size (split over the replicas of --strategy).", lower_bound=1)
flags.DEFINE_enum("optimizer", "sgd", list(training.OPTIMIZERS), "Optimizer.")
flags.DEFINE_float("lr", 0.1, "Initial learning rate, for the global batch (not scaled with the replicas).",
                   lower_bound=0)
flags.DEFINE_float("momentum", 0.9, "SGD momentum.", lower_bound=0)
flags.DEFINE_float("weight_decay", 0.0, "Weight decay (Keras optimizers apply it decoupled).", lower_bound=0)
flags.DEFINE_enum("lr_schedule", "constant", list(training.LR_SCHEDULES),
                  "constant; step (x lr_factor at each of lr_boundaries); cosine (to 0 over epochs).")
flags.DEFINE_list("lr_boundaries", [], "Epochs at which the step schedule multiplies lr by lr_factor, e.g. 30,60,90.")
flags.DEFINE_float("lr_factor", 0.1, "Step schedule factor.", lower_bound=0)
flags.DEFINE_string("output_dir", "runs/run", "Folder for checkpoints, logs, metrics.json and the model.")
flags.DEFINE_integer("seed", 0, "Random seed (data order, augmentation, initialisation).")
flags.DEFINE_string("pretrained", None, "Initialise from a saved model (.keras/.h5), weights file or checkpoint.")
flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch (0: the whole training set).", lower_bound=0)
flags.DEFINE_integer("train_subset", 0, "Train on the first N training images only (0: all).", lower_bound=0)
flags.DEFINE_integer("validation_size", 0, "Hold out N training images for validation (paper: 10000); "
                     "0 validates on the test set.", lower_bound=0)
flags.DEFINE_bool("summary", False, "Print larq.models.summary of the model and exit.")
flags.DEFINE_bool("overwrite", False, "Train again even if --output_dir holds a complete run.")
flags.DEFINE_integer("verbose", 1, "Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch.")
# The options of the training methods (LNS: alpha, rho, ..., warmup_epochs; BONN:
# bonn_lambda, ...), one flag each, as the methods declare them (lns_larq.methods).
methods.define_flags(FLAGS)
flags.adopt_module_key_flags(methods)  # listed by --help, not only --helpfull


def config_from_flags():
    try:
        boundaries = tuple(int(b) for b in FLAGS.lr_boundaries)
    except ValueError:
        raise training.ConfigError(f"lr_boundaries must be whole epochs, got {FLAGS.lr_boundaries}") from None
    return training.TrainConfig(
        model=FLAGS.model, quantizer=FLAGS.quantizer, dataset=FLAGS.dataset,
        data_path=FLAGS.data_path, data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir,
        strategy=FLAGS.strategy, epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
        optimizer=FLAGS.optimizer, lr=FLAGS.lr,
        momentum=FLAGS.momentum, weight_decay=FLAGS.weight_decay,
        lr_schedule=FLAGS.lr_schedule, lr_boundaries=boundaries, lr_factor=FLAGS.lr_factor,
        output_dir=FLAGS.output_dir, seed=FLAGS.seed, pretrained=FLAGS.pretrained,
        steps_per_epoch=FLAGS.steps_per_epoch, train_subset=FLAGS.train_subset,
        validation_size=FLAGS.validation_size, verbose=FLAGS.verbose, overwrite=FLAGS.overwrite,
        command=shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        **methods.settings_from_flags(FLAGS),
    )


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    try:
        config = config_from_flags()
        if FLAGS.summary:
            import larq as lq

            config.validate()
            imagenet = config.dataset == training.imagenet.NAME
            input_shape, classes = ((224, 224, 3), 1000) if imagenet else ((32, 32, 3), 10)
            lq.models.summary(training.build_model(config, input_shape, classes))
            return
        metrics = training.run(config)
    except (training.ConfigError, DataError) as e:
        fail(str(e))
    if "test_top5_accuracy" in metrics:
        print(f"test top-5 accuracy {metrics['test_top5_accuracy']:.4f}")
    print(f"test accuracy {metrics['test_accuracy']:.4f}  test loss {metrics['test_loss']:.4f}  "
          f"wall time {metrics['wall_time_s']:.0f} s")
    print(f"outputs in {config.output_dir}: model.keras, best.keras, last.keras, log.csv, "
          f"metrics.json, tensorboard/")


if __name__ == "__main__":
    app.run(main)
