"""A campaign's LNS run with the best hold-out accuracy, baked and measured as it
would ship (as `resnet20_lns`), kept in <campaign>/shipped/.

    .venv/bin/python campaigns/ship_best_lns.py            # after each long LNS run
    .venv/bin/python campaigns/ship_best_lns.py --promote --why "..."  # ship it: into lns_larq/weights
    .venv/bin/python campaigns/ship_best_lns.py --campaign campaigns/paper --checkpoint model.keras

campaigns/issue20.sh runs it after each `long` LNS run (issue 20, item 6), while
that run's best.keras (the epoch its hold-out selected) is on disk: models are not
committed, the baked 1.3 MB candidate is. campaigns/issue36.sh runs it after each
`paper` LNS run with the run's last epoch (`--checkpoint model.keras`): a
120-epoch run spans sessions, and only its fine-tuning checkpoint survives them,
not best.keras. It replaces the candidate only when a run beats it on the
hold-out accuracy of the model it would bake: the selected epoch's for best.keras,
the last epoch's for model.keras. The test split plays no part in the choice.
Every LNS arm (`lns*`) competes. `--promote` moves the candidate's file and
manifest entry (its figures, measured by lns_larq.shipping.save on the test split
and the hold-out) into the package, with its difference to the shipped `resnet20`
it was fine-tuned from.

The name it ships under is its runs' model: `resnet20_lns`, or `resnet20_prelu_lns`
for a campaign that fine-tunes the `resnet20_prelu` baseline (issue 36's hedge),
whose figures are then stated against the shipped `resnet20_prelu`. A name loads
one architecture (`lns_larq.models.get`), so PReLU weights never ship as `resnet20`.
"""

import csv
import glob
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMPAIGN = os.path.join("campaigns", "long")
CHECKPOINT = "best.keras"
WEIGHTS = "cifar10"


def key(name):
    """The manifest key of model `name`'s weights."""
    return f"{name}/{WEIGHTS}"


def shipped_run(directory, name):
    """The run folder the entry of `name` in `directory`'s manifest was made from, or None."""
    path = os.path.join(directory, "manifest.json")
    command = json.load(open(path)).get(key(name), {}).get("command", "") if os.path.exists(path) else ""
    return command.split("--output_dir=")[1].split()[0] if "--output_dir=" in command else None


def holdout_accuracy(run, checkpoint):
    """The hold-out accuracy of `run`'s `checkpoint`: best.keras holds the epoch its
    hold-out selected, model.keras the last epoch, whose hold-out may be lower."""
    if checkpoint == "best.keras":
        return json.load(open(os.path.join(run, "metrics.json")))["best_val_accuracy"]
    with open(os.path.join(run, "log.csv")) as f:
        return float(list(csv.DictReader(f))[-1]["val_accuracy"])


def keep_best(campaign=CAMPAIGN, checkpoint=CHECKPOINT):
    candidate = os.path.join(campaign, "shipped")
    runs = {run: holdout_accuracy(run, checkpoint) for run in sorted(
        os.path.dirname(path) for path in glob.glob(os.path.join(campaign, "dorefa", "seed*", "lns*", "metrics.json")))}
    if not runs:
        sys.exit(f"no complete LNS run in {campaign} yet")
    best = max(runs, key=runs.get)
    name = json.load(open(os.path.join(best, "metrics.json")))["model"]
    kept = shipped_run(candidate, name)
    if kept in runs and runs[kept] >= runs[best]:
        print(f"the candidate stays {kept} (hold-out {100 * runs[kept]:.2f} %, the best of {len(runs)} LNS runs "
              f"of {campaign})")
        return
    if not os.path.exists(os.path.join(best, checkpoint)):
        sys.exit(f"{best} has the best hold-out ({100 * runs[best]:.2f} %) but its {checkpoint} is gone")
    os.makedirs(candidate, exist_ok=True)
    before = f"{100 * runs[kept]:.2f} %" if kept in runs else f"a run of another campaign ({kept})"
    why = ["--why", f"hold-out {100 * runs[best]:.2f} % against {before}"] if kept else []
    subprocess.run([sys.executable, "train/ship_weights.py", "--run", best, "--name", name,
                    "--checkpoint", checkpoint, "--directory", candidate, *why], check=True)


def promote(campaign=CAMPAIGN, why=None):
    candidate = os.path.join(campaign, "shipped")
    from lns_larq import models, pretrained, shipping

    candidates = pretrained.read_manifest(candidate)
    if len(candidates) != 1:
        sys.exit(f"{candidate} holds {len(candidates)} candidates, not one: rerun without --promote first")
    ((shipped, entry),) = candidates.items()
    name = shipped.split("/")[0]
    base, _ = models.split_name(name)  # the baseline an LNS model is fine-tuned from: resnet20 for resnet20_lns
    baseline = key(base)
    manifest = pretrained.read_manifest(pretrained.WEIGHTS_DIR)
    if baseline not in manifest:
        # The difference is stated to the shipped baseline, so that one ships first.
        sys.exit(f"{baseline} does not ship: ship the baseline the campaign fine-tunes first "
                 f"(train/ship_weights.py --run {campaign}/dorefa/seed0/baseline --name {base})")
    try:
        shipping.require_why(manifest, shipped, why)
    except ValueError as e:
        sys.exit(f"{e}")
    shutil.copy(os.path.join(candidate, entry["file"]), os.path.join(pretrained.WEIGHTS_DIR, entry["file"]))
    # The old entry goes into the new one's `previous`, for users of the old file.
    shipping.replace(manifest, shipped, entry, why)
    # Every run of the campaign fine-tunes the shipped baseline, whose figures the
    # manifest holds beside it.
    shipping.state_difference(manifest, shipped, baseline)
    shipping.write_manifest(pretrained.WEIGHTS_DIR, manifest)
    difference = manifest[shipped]["difference"]
    print(f"shipped {shipped} from {shipped_run(candidate, name)}: test {100 * entry['test_accuracy']:.2f} %, "
          f"hold-out {100 * entry['holdout_accuracy']:.2f} % ({100 * difference['test_accuracy']:+.2f} and "
          f"{100 * difference['holdout_accuracy']:+.2f} points to {baseline})")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Keep (or ship) a campaign's best hold-out LNS run.")
    parser.add_argument("--campaign", default=CAMPAIGN, help="The campaign's runs folder.")
    parser.add_argument("--checkpoint", default=CHECKPOINT, choices=["best.keras", "model.keras"],
                        help="The run's model to bake: its hold-out's epoch or its last.")
    parser.add_argument("--promote", action="store_true", help="Ship the kept candidate into lns_larq/weights.")
    parser.add_argument("--why", help="With --promote: why it replaces the LNS weights shipping under its name "
                        "(kept in the manifest with the old file's SHA-256 and figures).")
    args = parser.parse_args()
    os.chdir(ROOT)
    sys.path.insert(0, ROOT)
    promote(args.campaign, args.why) if args.promote else keep_best(args.campaign, args.checkpoint)
