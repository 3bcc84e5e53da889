"""What the sign activations of saved binary models see, layer by layer, side by side.

    python train/sign_inputs.py campaigns/paper/dorefa/seed0/baseline/last.keras \
        campaigns/short/dorefa/seed0/baseline/model.keras \
        --data_path ../shared/data/cifar10/cifar10_jpegq75.npz

One row per layer that binarizes its input (`lns_larq.activations.sign_inputs`),
one column pair per model: the standard deviation of the layer's input, and the
share of its entries outside the straight-through estimator's window (|x| > 1 for
`ste_sign`), where the estimator passes no gradient. Measured in inference mode
on the first --images images of the training split's hold-out (the 10,000 that
`--validation_size 10000` holds out, normalized as in training); the models must
share their layers' names.
"""


from absl import app, flags, logging

from cli import fail, model_files, write_json

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "cifar10", ["cifar10", "digits"], "cifar10, or digits (the bundled demo, no download).")
flags.DEFINE_string("data_path", None,
                    "CIFAR-10 .npz file or cifar-10-batches-py folder; default: tensorflow-datasets.")
flags.DEFINE_integer("validation_size", 10000, "The hold-out the images come from (as train/fit.py's).",
                     lower_bound=1)
flags.DEFINE_integer("images", 1000, "How many hold-out images to measure on.", lower_bound=1)
flags.DEFINE_string("output", None, "Also write the figures as JSON here.")


def main(argv):
    logging.set_verbosity(logging.ERROR)
    paths = model_files(argv)
    if FLAGS.images > FLAGS.validation_size:
        fail(f"--images {FLAGS.images} exceeds the hold-out's {FLAGS.validation_size} images")
    import numpy as np

    import lns_larq  # noqa: F401  (selects Keras 2 before TensorFlow loads)
    from lns_larq import activations, data
    from lns_larq.keras_utils import load_model

    try:
        arrays = data.load(FLAGS.dataset, data_path=FLAGS.data_path)
        _, holdout, _ = data.pipelines(arrays, batch_size=250, validation_size=FLAGS.validation_size, augment=False)
    except data.DataError as e:
        fail(str(e))
    batches = holdout.take(-(-FLAGS.images // 250))  # the batches of 250 that hold --images, not all
    x = np.concatenate([batch for batch, _ in batches.as_numpy_iterator()])[:FLAGS.images]

    results = []
    for path in paths:
        try:
            results.append(activations.sign_inputs(load_model(path), x))
        except ValueError as e:  # unreadable, or no layer that binarizes its input
            fail(f"{path}: {e}")
    layers = [row["layer"] for row in results[0]]
    for path, rows in zip(paths, results):
        if [row["layer"] for row in rows] != layers:
            fail(f"{path} does not have the layers of {paths[0]}")
    print(f"input of each binary layer on {len(x)} hold-out images: std, and % of entries outside the "
          "straight-through window")
    for i, path in enumerate(paths):
        print(f"  model {i + 1}: {path}")
    print(f"{'layer':<28}" + "".join(f"{f'model {i + 1}: std':>17}{'outside':>9}" for i in range(len(paths))))
    for j, layer in enumerate(layers):
        print(f"{layer:<28}" + "".join(f"{rows[j]['std']:>17.3f}{100 * rows[j]['outside']:>8.1f}%"
                                       for rows in results))
    if FLAGS.output:
        write_json(FLAGS.output, {"images": len(x), "models": [dict(model=path, layers=rows)
                                                               for path, rows in zip(paths, results)]})


if __name__ == "__main__":
    app.run(main)
