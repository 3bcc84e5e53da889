"""The latent-weight distribution of saved binary models, side by side.

    python train/latent_weights.py campaigns/short/dorefa/seed0/baseline/model.keras \
        campaigns/short_sgd/dorefa/seed0/baseline/model.keras

One row per model (`lns_larq.latent.distribution`): median |W| and its 10th and
90th percentiles, and the fractions of weights at the clip (|W| >= 0.99) and near zero
(|W| < 0.01), over every binarized layer. These say how far a fine-tuning step must
move a weight to flip it (docs/results/paper.md).
"""

import json

from absl import app, flags

from cli import fail, model_files

FLAGS = flags.FLAGS
flags.DEFINE_float("near_zero", 0.01, "Bound under which a weight counts as near zero.", lower_bound=0)
flags.DEFINE_string("output", None, "Also write the figures as JSON here.")


def main(argv):
    paths = model_files(argv)
    from lns_larq import latent
    from lns_larq.keras_utils import load_model

    rows = []
    for path in paths:
        try:
            stats = latent.distribution(load_model(path), near_zero=FLAGS.near_zero)
        except ValueError as e:  # unreadable, or no binarized layer
            fail(f"{path}: {e}")
        rows.append(dict(model=path, **stats))
    print(f"{'median |W|':>11}{'p10-p90 |W|':>16}{'at clip':>9}{f'< {FLAGS.near_zero:g}':>9}{'weights':>10}  model")
    for r in rows:
        print(f"{r['median_abs']:>11.3f}{r['p10_abs']:>9.3f}-{r['p90_abs']:.3f}{100 * r['at_clip']:>8.1f}%"
              f"{100 * r['near_zero']:>8.1f}%{r['weights']:>10,}  {r['model']}")
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    app.run(main)
