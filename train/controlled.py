"""The controlled noisy-label experiment: does the mapping correct wrong binary weights?

    python train/controlled.py --output_dir docs/controlled

Synthetic structured filters with known clean signs (`lns_larq.noisy_filters`);
a fraction rho of single taps is flipped and shrunk. Each mapping trains on the
noisy-supervision loss alone (Adam); the fraction of flipped taps it corrects
and of clean taps it breaks are recorded over the steps, for a grid of widths,
rhos and weight decays, the default (ungated) mapping beside the gated one.
Writes `controlled.csv`, `controlled.png` and prints the best checkpoint of
each setting (most corrected with at most 1 % broken).
"""

import csv
import itertools
import os
import time

from absl import app, flags

import lns_larq  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from cli import fail
from lns_larq import noisy_filters
from lns_larq.quantizers import LNSQuantizer

FLAGS = flags.FLAGS
VARIANTS = {  # name -> LNSQuantizer options
    "default": {},
    "gated": {"gated": True, "loss_input": "output"},
    "output": {"loss_input": "output"},  # ungated, Eq. 15 on the tanh output
}

flags.DEFINE_list("widths", ["0.5", "1", "2"], "Mapping widths (hidden channels / input channels; paper: 2).")
flags.DEFINE_list("rhos", ["0.01", "0.05", "0.1"], "Fractions of flipped taps.")
flags.DEFINE_list("decays", ["0", "0.01"], "L2 weight decays on the mapping (theta).")
flags.DEFINE_list("variants", ["default", "gated"], f"Mappings to compare, of {', '.join(VARIANTS)}.")
flags.DEFINE_integer("filters", 256, "Filters of the synthetic layer.", lower_bound=1)
flags.DEFINE_integer("channels", 16, "Input channels of the synthetic layer.", lower_bound=1)
flags.DEFINE_integer("steps", 1000, "Training steps per setting.", lower_bound=1)
flags.DEFINE_integer("every", 25, "Score every N steps.", lower_bound=1)
flags.DEFINE_float("lr", 1e-3, "Adam learning rate.", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of the task and the mapping's initialisation.")
flags.DEFINE_string("output_dir", "runs/controlled", "Where controlled.csv and controlled.png go.")


def best_checkpoint(curve, max_broken=0.01):
    """The checkpoint correcting the most flips while breaking at most `max_broken`."""
    allowed = [c for c in curve if c["broken"] <= max_broken]
    return max(allowed, key=lambda c: c["corrected"]) if allowed else None


def run_grid():
    rows = []
    for rho, width, decay, variant in itertools.product(
            map(float, FLAGS.rhos), map(float, FLAGS.widths), map(float, FLAGS.decays), FLAGS.variants):
        if variant == "gated" and decay:
            continue  # the gated mapping corrects nothing; decay does not change that
        task = noisy_filters.make_task(FLAGS.filters, FLAGS.channels, rho=rho, seed=FLAGS.seed)
        quantizer = LNSQuantizer(width=width, decay=decay, **VARIANTS[variant])
        start = time.time()
        curve = noisy_filters.train_mapping(quantizer, task, FLAGS.steps, lr=FLAGS.lr, every=FLAGS.every,
                                            seed=FLAGS.seed)
        best = best_checkpoint(curve)
        print(f"rho {rho:g} width {width:g} decay {decay:g} {variant:8s}: "
              + (f"best at step {best['step']}: corrected {best['corrected']:.3f}, broken {best['broken']:.4f}, "
                 f"agreement {best['agreement']:.4f}" if best else "never within 1 % broken")
              + f"; at step {curve[-1]['step']}: corrected {curve[-1]['corrected']:.3f} ({time.time() - start:.0f} s)",
              flush=True)
        rows += [dict(rho=rho, width=width, decay=decay, variant=variant, **c) for c in curve]
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rhos = sorted({r["rho"] for r in rows})
    fig, axes = plt.subplots(2, len(rhos), figsize=(5 * len(rhos), 7.5), sharex=True, squeeze=False)
    settings = sorted({(r["width"], r["decay"], r["variant"]) for r in rows})
    for col, rho in enumerate(rhos):
        for width, decay, variant in settings:
            curve = [r for r in rows
                     if (r["rho"], r["width"], r["decay"], r["variant"]) == (rho, width, decay, variant)]
            if not curve:
                continue
            steps = [r["step"] for r in curve]
            style = {"gated": "--", "output": ":"}.get(variant, "-")
            label = f"{variant}, width {width:g}" + (f", decay {decay:g}" if decay else "")
            axes[0, col].plot(steps, [100 * r["corrected"] for r in curve], style, label=label)
            axes[1, col].plot(steps, [100 * r["broken"] for r in curve], style, label=label)
        axes[0, col].set_title(f"{100 * rho:g} % of taps flipped")
        axes[0, col].set_ylabel("flipped taps corrected %")
        axes[1, col].set_ylabel("clean taps broken %")
        axes[1, col].set_yscale("symlog", linthresh=0.1)
        axes[1, col].set_xlabel("Adam steps on the noisy loss alone")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Controlled noisy-label task: {FLAGS.filters} filters 3x3x{FLAGS.channels}, "
                 f"one clean sign per (filter, channel); conv3 mapping, Adam {FLAGS.lr:g}, seed {FLAGS.seed}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    try:
        for name in ("widths", "rhos", "decays"):
            [float(v) for v in getattr(FLAGS, name)]
    except ValueError:
        fail(f"--{name} must be numbers, got {getattr(FLAGS, name)}")
    unknown = set(FLAGS.variants) - set(VARIANTS)
    if unknown:
        fail(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    rows = run_grid()
    with open(os.path.join(FLAGS.output_dir, "controlled.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, os.path.join(FLAGS.output_dir, "controlled.png"))
    print(f"wrote {FLAGS.output_dir}/controlled.csv and controlled.png")


if __name__ == "__main__":
    app.run(main)
