"""Runs of one learning-rate schedule side by side, at equal epochs: a markdown table.

    python train/compare_runs.py --at_epochs 10,20,30,40,50,60 \
        --runs plain=campaigns/paper/dorefa/seed0/baseline,hardtanh=campaigns/paper_hardtanh/dorefa/seed0/baseline

For each epoch E (1-based) of `--at_epochs`, each run's training accuracy at E and its
hold-out accuracy averaged over epochs E - window + 1 to E, from the runs'
`log.csv`; finished runs or runs still in flight alike. The hold-out is averaged
because at lr 0.1 it swings by 2-5 points from one epoch to the next, while the
training accuracy, a mean over the epoch's steps, is smooth already. The
learning-rate column is the first run's; the runs should share the schedule, or
equal epochs do not compare.
"""

import csv
import os

from absl import app, flags

from cli import fail

FLAGS = flags.FLAGS
# Names no other script of train/ defines: absl's flags are global to a process.
flags.DEFINE_list("runs", None, "label=folder,... of train/fit.py runs (their log.csv), in column order.")
flags.DEFINE_list("at_epochs", None, "Epochs to compare, 1-based, e.g. 10,20,30.")
flags.DEFINE_integer("holdout_window", 10, "Epochs the hold-out accuracy is averaged over, ending at each one.",
                     lower_bound=1)
flags.mark_flags_as_required(["runs", "at_epochs"])

__all__ = ["equal_epoch_table", "read_log"]


def read_log(folder: str) -> list[dict]:
    """The rows of `folder`/log.csv, one per epoch in order.

    # Raises
        ValueError: if there is no log.csv, or it lacks an epoch, accuracy, lr or
        val_accuracy column.
    """
    path = os.path.join(folder, "log.csv")
    if not os.path.isfile(path):
        raise ValueError(f"{folder} has no log.csv")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"epoch", "accuracy", "lr", "val_accuracy"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} has no column {', '.join(sorted(missing))}")
        return list(reader)


def equal_epoch_table(logs: dict[str, list[dict]], epochs: list[int], window: int = 10) -> list[str]:
    """The markdown lines comparing `logs` (label: `read_log` rows) at `epochs`
    (1-based): lr, then per run "training / hold-out" in %, the hold-out averaged
    over the `window` epochs ending at each epoch (fewer at the start).

    # Raises
        ValueError: if a run has fewer epochs than the largest asked for.
    """
    for label, rows in logs.items():
        if len(rows) < max(epochs):
            raise ValueError(f"{label} has {len(rows)} epochs, fewer than {max(epochs)}")
    first = next(iter(logs.values()))
    lines = [
        f"| epoch | lr | {' | '.join(logs)} |",
        f"|---|---|{'---|' * len(logs)}",
    ]
    for epoch in epochs:
        cells = []
        for rows in logs.values():
            training = 100 * float(rows[epoch - 1]["accuracy"])
            held = rows[max(0, epoch - window):epoch]
            holdout = 100 * sum(float(r["val_accuracy"]) for r in held) / len(held)
            cells.append(f"{training:.2f} / {holdout:.2f}")
        lines.append(f"| {epoch} | {float(first[epoch - 1]['lr']):.4f} | {' | '.join(cells)} |")
    return lines


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    try:
        epochs = [int(e) for e in FLAGS.at_epochs]
    except ValueError:
        fail(f"--at_epochs {','.join(FLAGS.at_epochs)}: not a list of integers")
    if not epochs or min(epochs) < 1:
        fail("--at_epochs: each epoch is 1 or more")
    logs = {}
    for spec in FLAGS.runs:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not folder:
            fail(f"--runs {spec}: expected label=folder")
        try:
            logs[label] = read_log(folder)
        except ValueError as e:
            fail(str(e))
    try:
        lines = equal_epoch_table(logs, epochs, FLAGS.holdout_window)
    except ValueError as e:
        fail(str(e))
    print(f"Training accuracy at the epoch / hold-out accuracy averaged over the {FLAGS.holdout_window} epochs "
          "ending there, %:\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
