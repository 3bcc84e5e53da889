"""Issue 20, item 6: the `long` campaign's LNS run with the best hold-out accuracy,
baked and measured as `resnet20_lns` would ship, kept in campaigns/long/shipped/.

    .venv/bin/python campaigns/ship_best_lns.py            # after each long LNS run
    .venv/bin/python campaigns/ship_best_lns.py --promote  # ship it: into lns_larq/weights

campaigns/issue20.sh runs it after each long LNS run, while that run's best.keras
(the epoch its hold-out selected) is on disk: models are not committed, the baked
1.3 MB candidate is. It replaces the candidate only when a run beats it on the
hold-out; the test split plays no part in the choice. `--promote` moves the
candidate's file and manifest entry (its figures, measured by
lns_larq.shipping.save on the test split and the hold-out) into the package, with
its difference to the shipped `resnet20` it was fine-tuned from.
"""

import glob
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANDIDATE = os.path.join("campaigns", "long", "shipped")
KEY = "resnet20_lns/cifar10"
BASELINE = "resnet20/cifar10"


def shipped_run(directory):
    """The run folder the entry `KEY` of `directory`'s manifest was made from, or None."""
    path = os.path.join(directory, "manifest.json")
    command = json.load(open(path)).get(KEY, {}).get("command", "") if os.path.exists(path) else ""
    return command.split("--output_dir=")[1].split()[0] if "--output_dir=" in command else None


def keep_best():
    runs = {os.path.dirname(path): json.load(open(path))["best_val_accuracy"]
            for path in sorted(glob.glob("campaigns/long/dorefa/seed*/lns*/metrics.json"))}
    if not runs:
        sys.exit("no complete LNS run in campaigns/long yet")
    best, kept = max(runs, key=runs.get), shipped_run(CANDIDATE)
    if kept in runs and runs[kept] >= runs[best]:
        print(f"the candidate stays {kept} (hold-out {100 * runs[kept]:.2f} %, the best of {len(runs)} long LNS runs)")
        return
    if not os.path.exists(os.path.join(best, "best.keras")):
        sys.exit(f"{best} has the best hold-out ({100 * runs[best]:.2f} %) but its best.keras is gone")
    os.makedirs(CANDIDATE, exist_ok=True)
    subprocess.run([sys.executable, "train/ship_weights.py", "--run", best, "--name", "resnet20_lns",
                    "--checkpoint", "best.keras", "--directory", CANDIDATE], check=True)


def promote():
    from lns_larq import pretrained, shipping

    entry = pretrained.read_manifest(CANDIDATE)[KEY]
    shutil.copy(os.path.join(CANDIDATE, entry["file"]), os.path.join(pretrained.WEIGHTS_DIR, entry["file"]))
    manifest = pretrained.read_manifest(pretrained.WEIGHTS_DIR)
    manifest[KEY] = entry
    # Every run of the campaign fine-tunes the shipped baseline, whose figures the
    # manifest holds beside it.
    shipping.state_difference(manifest, KEY, BASELINE)
    shipping.write_manifest(pretrained.WEIGHTS_DIR, manifest)
    difference = manifest[KEY]["difference"]
    print(f"shipped {KEY} from {shipped_run(CANDIDATE)}: test {100 * entry['test_accuracy']:.2f} %, "
          f"hold-out {100 * entry['holdout_accuracy']:.2f} % ({100 * difference['test_accuracy']:+.2f} and "
          f"{100 * difference['holdout_accuracy']:+.2f} points to {BASELINE})")


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.path.insert(0, ROOT)
    promote() if sys.argv[1:] == ["--promote"] else keep_best()
