"""Train a binary network on CIFAR-10, ImageNet (or the bundled digits demo) with Keras fit.

Baseline:   python train/fit.py --model resnet20 --quantizer dorefa \
                --data_path ../shared/data/cifar10/cifar10_jpegq75.npz --epochs 1
LNS:        python train/fit.py --model resnet20_lns --pretrained runs/base/model.keras \
                --alpha 1.0 --rho 0.005 --warmup_epochs 5 --epochs 120 --lr 0.01 \
                --lr_schedule step --lr_boundaries 30,60,90
ImageNet:   python train/fit.py --model resnet18_bireal --quantizer xnor --dataset imagenet2012 \
                --data_dir ~/tensorflow_datasets --manual_dir ~/ilsvrc2012 --strategy mirrored \
                --batch_size 256 --epochs 120 --lr_schedule step --lr_boundaries 70,90,110
                (see docs/imagenet.md; --batch_size is the global batch over all replicas)

Rerunning the same command after a crash or kill resumes from the last completed
epoch. Outputs go to --output_dir (see lns_larq/training.py).
"""

import shlex
import sys

import lns_larq  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from absl import app, flags, logging

from lns_larq import models, training
from lns_larq.data import DataError

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "resnet20", f"Model name: {', '.join(models.available())}.")
flags.DEFINE_enum("quantizer", "dorefa", ["dorefa", "xnor", "binarynet"],
                  "Baseline weight quantizer: dorefa (layer scale), xnor (channel scale), binarynet (none).")
flags.DEFINE_enum("dataset", "cifar10", list(training.DATASETS),
                  "cifar10, digits (bundled demo, no download), or imagenet2012 (tensorflow-datasets, "
                  "built from the archives in --manual_dir).")
flags.DEFINE_string("data_path", None, "CIFAR-10 .npz file or cifar-10-batches-py folder; default: tensorflow-datasets.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir (download/cache folder).")
flags.DEFINE_string("manual_dir", None, "imagenet2012: folder with ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar "
                    "(default <data_dir>/downloads/manual); needed until the dataset is prepared.")
flags.DEFINE_enum("strategy", "default", list(training.distribute.STRATEGIES),
                  "tf.distribute strategy: default (one device), mirrored (all GPUs of this machine), "
                  "multi_worker (all workers of TF_CONFIG), tpu.")
flags.DEFINE_integer("epochs", 1, "Training epochs (after warm start).", lower_bound=0)
flags.DEFINE_integer("batch_size", 128, "Global batch size (split over the replicas of --strategy).", lower_bound=1)
flags.DEFINE_enum("optimizer", "sgd", list(training.OPTIMIZERS), "Optimizer.")
flags.DEFINE_float("lr", 0.1, "Initial learning rate, for the global batch (not scaled with the replicas).", lower_bound=0)
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
# LNS (models named *_lns)
flags.DEFINE_float("alpha", 1.0, "Weight of the noisy-supervision loss (Eq. 21); 0 is the 'w/o noisy supervision' ablation.", lower_bound=0)
flags.DEFINE_float("rho", 0.005, "Symmetric noise rate rho(+1) = rho(-1).", lower_bound=0)
flags.DEFINE_float("rho_pos", None, "rho(+1) = P(label -1 | true +1); overrides --rho.", lower_bound=0)
flags.DEFINE_float("rho_neg", None, "rho(-1) = P(label +1 | true -1); overrides --rho.", lower_bound=0)
flags.DEFINE_enum("mapping", "conv3", ["conv3", "mlp", "linear"], "Mapping network f_theta.")
flags.DEFINE_enum("bound", "tanh", ["tanh", "hardtanh"], "Output bound of the mapping.")
flags.DEFINE_float("mapping_width", 2.0, "Hidden width of the mapping relative to its input (paper: 2).", lower_bound=0)
flags.DEFINE_float("mapping_decay", 0.0, "L2 weight decay on the mapping's kernels (theta).", lower_bound=0)
flags.DEFINE_bool("gated", False, "Gated mapping z = W_n (1 + f(W_n)), last layer at zero (the first design, to compare).")
flags.DEFINE_enum("loss_input", "preactivation", ["preactivation", "output"],
                  "Eq. 15 on the mapping's pre-activation z (keeps both gradients) or on its bounded output.")
flags.DEFINE_enum("labels", "current", ["current", "pretrained"],
                  "Noisy labels: sign of the current latent weights (Algorithm 1) or of the pretrained ones, frozen.")
flags.DEFINE_integer("warmup_epochs", 0, "Epochs training only the mapping networks before fine-tuning.", lower_bound=0)
flags.DEFINE_float("warmup_lr", 1e-3, "Adam learning rate of the warm start.", lower_bound=0)
flags.DEFINE_enum("warmup_objective", "noisy", ["full", "noisy"],
                  "Warm-start loss: full (cross-entropy + warmup_alpha * aux) or noisy (warmup_alpha * aux only).")
flags.DEFINE_float("warmup_alpha", 1.0, "Weight of the noisy-supervision loss in the warm start (also when --alpha 0).", lower_bound=0)
flags.DEFINE_float("warmup_agreement", 1.0, "Stop the warm start once this fraction of all binary weights agrees "
                   "with the noisy labels, and --warmup_layer_agreement of every layer's (0: never; 1 - rho, "
                   "e.g. 0.995 with --warmup_layer_agreement 0: the stop the controlled task rewards).",
                   lower_bound=0, upper_bound=1)
flags.DEFINE_float("warmup_layer_agreement", 1.0, "The agreement every LNS layer must reach before the warm start "
                   "stops (0: no per-layer condition).", lower_bound=0, upper_bound=1)
# BONN (models named *_bonn; see docs/bonn.md for the scale convention)
flags.DEFINE_float("bonn_lambda", 1e-2, "BONN kernel-loss weight: lambda/2 * sum over binary convs of the per-weight mean Bayesian kernel loss.", lower_bound=0)
flags.DEFINE_float("bonn_theta", 1e-1, "BONN feature-loss weight: theta/2 * the per-sample, per-dimension mean Bayesian feature loss.", lower_bound=0)
flags.DEFINE_float("bonn_nu", 1.0, "BONN nu: weight of the mixture-prior and log-det terms of the kernel loss.", lower_bound=0)


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
        bonn_lambda=FLAGS.bonn_lambda, bonn_theta=FLAGS.bonn_theta, bonn_nu=FLAGS.bonn_nu,
        **lns_config_from_flags(),
    )


def lns_config_from_flags():
    rho_pos = FLAGS.rho if FLAGS.rho_pos is None else FLAGS.rho_pos
    rho_neg = FLAGS.rho if FLAGS.rho_neg is None else FLAGS.rho_neg
    return dict(
        alpha=FLAGS.alpha, rho_pos=rho_pos, rho_neg=rho_neg, mapping=FLAGS.mapping,
        bound=FLAGS.bound, mapping_width=FLAGS.mapping_width, mapping_decay=FLAGS.mapping_decay,
        gated=FLAGS.gated, loss_input=FLAGS.loss_input, labels=FLAGS.labels,
        warmup_epochs=FLAGS.warmup_epochs, warmup_lr=FLAGS.warmup_lr,
        warmup_objective=FLAGS.warmup_objective, warmup_alpha=FLAGS.warmup_alpha,
        warmup_agreement=FLAGS.warmup_agreement, warmup_layer_agreement=FLAGS.warmup_layer_agreement,
    )


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        sys.exit(f"fit.py: error: unexpected arguments {argv[1:]}")
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
        sys.exit(f"fit.py: error: {e}")
    if "test_top5_accuracy" in metrics:
        print(f"test top-5 accuracy {metrics['test_top5_accuracy']:.4f}")
    print(f"test accuracy {metrics['test_accuracy']:.4f}  test loss {metrics['test_loss']:.4f}  "
          f"wall time {metrics['wall_time_s']:.0f} s")
    print(f"outputs in {config.output_dir}: model.keras, best.keras, last.keras, log.csv, "
          f"metrics.json, tensorboard/")


if __name__ == "__main__":
    app.run(main)
