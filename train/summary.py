"""Summaries of a model for training and for deployment.

    python train/summary.py --model resnet20_lns --quantizer dorefa
    python train/summary.py --model_path runs/<run>/model.keras

Prints Keras `model.summary()` and `larq.models.summary()` of the training model
and of its baked inference model (`lns_larq.export.bake`), then the deployable
size. The parameters of LNS mapping networks are training-only: Keras and Larq
count them in the training model (Larq even as float MACs of the conv), but
none is exported.
"""

import os

from absl import app, flags

from cli import fail

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A registered model name, e.g. resnet20, resnet20_lns.")
flags.DEFINE_string("model_path", None, "Or a saved Keras model (.keras or .h5).")
flags.DEFINE_enum("quantizer", "dorefa", ["dorefa", "xnor", "binarynet"], "Weight quantizer for --model.")
flags.DEFINE_bool("keras_summary", True, "Print Keras model.summary() as well as Larq's.")


def build(name, quantizer):
    from lns_larq import models

    try:
        base, _ = models.split_name(name)
    except ValueError as e:
        fail(str(e))
    options = {"quantizer": quantizer} if models.has_methods(base) else {}
    return models.get(name, **options)


def _kib(n_bytes):
    return f"{n_bytes / 1024:,.1f} KiB"


def size_rows(model, baked):
    """`(label, value)` rows: training-only mapping parameters and deployable size."""
    import numpy as np

    from lns_larq.export import deployable_params
    from lns_larq.lns import lns_layers

    mapped = lns_layers(model)
    mapping = sum(
        int(np.prod(w.shape)) for layer in mapped for w in layer.kernel_quantizer.weights
    )
    binary, floats = deployable_params(baked)
    deployable = binary / 8 + 4 * floats
    return [
        ("LNS layers", str(len(mapped))),
        ("mapping-network parameters", f"{mapping:,}  (training only, {_kib(4 * mapping)} "
                                       "float32; not in the baked or exported model)"),
        ("deployable parameters", f"{binary:,} binary (1 bit) + {floats:,} float (32 bit, "
                                  "batch-norm statistics included)"),
        ("deployable size", f"{_kib(deployable)}  (1 bit per binary weight, 4 bytes per float)"),
        ("float32 equivalent", f"{_kib(4 * (binary + floats))}  "
                               f"({4 * (binary + floats) / deployable:.1f}x larger)"),
    ]


def print_summaries(model, title):
    import larq as lq

    print(f"\n=== {title}: {model.name} ===\n")
    if FLAGS.keras_summary:
        model.summary(line_length=110)
    lq.models.summary(model)


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    if bool(FLAGS.model) == bool(FLAGS.model_path):
        fail("give exactly one of --model NAME or --model_path FILE")
    if FLAGS.model_path and not os.path.isfile(FLAGS.model_path):
        fail(f"--model_path {FLAGS.model_path}: no such file")

    import lns_larq  # noqa: F401  (selects Keras 2 before TensorFlow loads)
    from lns_larq import export
    from lns_larq.lns import lns_layers

    if FLAGS.model_path:
        try:
            model = export.load_model(FLAGS.model_path)
        except ValueError as e:
            fail(f"--model_path {e}")
    else:
        model = build(FLAGS.model, FLAGS.quantizer)
    has_lns = bool(lns_layers(model))
    baked = export.bake(model) if has_lns else model

    print_summaries(model, "Training model" + (" (mapping networks included)" if has_lns else ""))
    if has_lns:
        print("Note: Keras and Larq count the mapping networks' weights in the LNS convs (Larq "
              "also as 32-bit MACs); they are training-only, see the deployable size below.")
        print_summaries(baked, "Baked inference model (what export.py converts)")
    else:
        print("\nNo LNS layer: the model deploys as it is (no baking needed).")
    rows = size_rows(model, baked)
    width = max(len(label) for label, _ in rows)
    print(f"\n=== Deployable size: {model.name} ===")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    app.run(main)
