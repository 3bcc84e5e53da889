"""campaigns/ship_best_lns.py: the campaign's LNS candidate is chosen on the hold-out
of the model it bakes, never on the test split, and ships only with a reason.

The baking itself (train/ship_weights.py) is tested in test_pretrained.py; here its
call is recorded instead of run, over fake run folders laid out as fit.py leaves them.
"""

import json
import shutil

import pytest

from lns_larq import pretrained

from .conftest import load_script

KEY, BASELINE = "resnet20_lns/cifar10", "resnet20/cifar10"


@pytest.fixture
def ship(monkeypatch):
    module = load_script("campaigns", "ship_best_lns.py")
    calls = []
    monkeypatch.setattr(module.subprocess, "run", lambda command, check: calls.append(command))
    module.calls = calls
    return module


def _run(campaign, name, val_per_epoch, test_per_epoch, seed=0, checkpoints=("model.keras", "best.keras"),
         model="resnet20_lns"):
    """A complete run of `model`: log.csv with hold-out (`val_accuracy`) and test
    accuracy per epoch, metrics.json with the best hold-out, and its model files."""
    out = campaign / "dorefa" / f"seed{seed}" / name
    out.mkdir(parents=True)
    rows = [f"{epoch},{val},{test}" for epoch, (val, test) in enumerate(zip(val_per_epoch, test_per_epoch))]
    (out / "log.csv").write_text("\n".join(["epoch,val_accuracy,test_accuracy", *rows]) + "\n")
    (out / "metrics.json").write_text(json.dumps(dict(model=model, best_val_accuracy=max(val_per_epoch),
                                                      best_test_accuracy=max(test_per_epoch))))
    for checkpoint in checkpoints:
        (out / checkpoint).write_bytes(b"model")
    return str(out)


def _shipped(ship, campaign, run):
    """The candidate folder as train/ship_weights.py leaves it, made from `run`."""
    (campaign / "shipped").mkdir(exist_ok=True)
    (campaign / "shipped" / "manifest.json").write_text(json.dumps({KEY: dict(
        command=f"python train/fit.py --model=resnet20_lns --output_dir={run}  # model.keras")}))


def _baked(call):
    return call[call.index("--run") + 1], call[call.index("--checkpoint") + 1]


def test_the_last_epoch_is_chosen_on_its_own_hold_out_and_the_best_epoch_on_its_own(ship, tmp_path):
    # `early` peaks on the hold-out early and ends lower; `late` ends highest. Both
    # have the higher test accuracy where the hold-out does not pick them.
    early = _run(tmp_path, "lns", [0.80, 0.70], [0.70, 0.90])
    late = _run(tmp_path, "lns", [0.75, 0.79], [0.99, 0.60], seed=1)
    ship.keep_best(str(tmp_path), "model.keras")
    ship.keep_best(str(tmp_path), "best.keras")
    assert [_baked(call) for call in ship.calls] == [(late, "model.keras"), (early, "best.keras")]
    assert "--why" not in ship.calls[0]  # nothing kept yet: nothing replaced


def test_every_lns_arm_competes_and_other_arms_do_not(ship, tmp_path):
    _run(tmp_path, "lns", [0.70], [0.7])
    no_noisy = _run(tmp_path, "lns_no_noisy", [0.71], [0.7])
    _run(tmp_path, "finetune", [0.90], [0.9])
    ship.keep_best(str(tmp_path), "model.keras")
    assert [_baked(call) for call in ship.calls] == [(no_noisy, "model.keras")]


def test_the_kept_candidate_stays_unless_a_run_beats_it_and_a_replacement_says_why(ship, tmp_path, capsys):
    kept = _run(tmp_path, "lns", [0.78], [0.7])
    _shipped(ship, tmp_path, kept)
    _run(tmp_path, "lns", [0.78], [0.9], seed=1)  # a tie on the hold-out does not replace it
    ship.keep_best(str(tmp_path), "model.keras")
    assert ship.calls == [] and f"the candidate stays {kept} (hold-out 78.00 %" in capsys.readouterr().out
    better = _run(tmp_path, "lns", [0.79], [0.5], seed=2)
    ship.keep_best(str(tmp_path), "model.keras")
    (call,) = ship.calls
    assert _baked(call) == (better, "model.keras")
    assert call[call.index("--why") + 1] == "hold-out 79.00 % against 78.00 %"


def test_no_run_or_a_lost_model_is_a_one_line_error(ship, tmp_path):
    with pytest.raises(SystemExit, match=f"^no complete LNS run in {tmp_path} yet$"):
        ship.keep_best(str(tmp_path), "model.keras")
    best = _run(tmp_path, "lns", [0.8], [0.8], checkpoints=("model.keras",))
    with pytest.raises(SystemExit, match=f"^{best} has the best hold-out \\(80.00 %\\) but its best.keras is gone$"):
        ship.keep_best(str(tmp_path), "best.keras")
    assert ship.calls == []


def test_promote_ships_the_candidate_with_its_reason_and_its_difference_to_resnet20(ship, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    shutil.copytree(pretrained.WEIGHTS_DIR, weights, ignore=shutil.ignore_patterns("*.h5"))
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", str(weights))
    old = pretrained.read_manifest(str(weights))
    campaign = tmp_path / "campaign"
    (campaign / "shipped").mkdir(parents=True)
    entry = dict(old[KEY], sha256="b" * 64, test_accuracy=0.85, holdout_accuracy=0.86,
                 command="python train/fit.py --output_dir=campaign/dorefa/seed3/lns  # model.keras")
    (campaign / "shipped" / "manifest.json").write_text(json.dumps({KEY: entry}))
    (campaign / "shipped" / entry["file"]).write_bytes(b"new weights")

    with pytest.raises(SystemExit, match="already ships; say why it is replaced with --why$"):
        ship.promote(str(campaign))
    assert pretrained.read_manifest(str(weights)) == old and not (weights / entry["file"]).exists()

    ship.promote(str(campaign), why="the paper's protocol")
    assert (weights / entry["file"]).read_bytes() == b"new weights"
    new = pretrained.read_manifest(str(weights))[KEY]
    assert new["sha256"] == "b" * 64 and new["previous"][0]["sha256"] == old[KEY]["sha256"]
    assert new["previous"][0]["why"] == "the paper's protocol"
    base = old[BASELINE]
    assert new["difference"] == dict(to=BASELINE, test_accuracy=round(0.85 - base["test_accuracy"], 6),
                                     holdout_accuracy=round(0.86 - base["holdout_accuracy"], 6))


def test_a_prelu_campaign_ships_under_its_own_name_after_its_baseline(ship, tmp_path, monkeypatch):
    """Issue 36's hedge: a campaign that fine-tunes resnet20_prelu ships
    resnet20_prelu_lns, stated against resnet20_prelu, and leaves resnet20_lns alone."""
    weights = tmp_path / "weights"
    shutil.copytree(pretrained.WEIGHTS_DIR, weights, ignore=shutil.ignore_patterns("*.h5"))
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", str(weights))
    campaign = tmp_path / "paper_prelu"
    run = _run(campaign, "lns", [0.8], [0.8], model="resnet20_prelu_lns")
    ship.keep_best(str(campaign), "model.keras")
    (call,) = ship.calls
    assert call[call.index("--name") + 1] == "resnet20_prelu_lns" and _baked(call) == (run, "model.keras")

    old = pretrained.read_manifest(str(weights))
    entry = dict(old[KEY], file="resnet20_prelu_lns_cifar10.weights.h5", sha256="c" * 64, test_accuracy=0.84,
                 holdout_accuracy=0.85, command=f"python train/fit.py --output_dir={run}  # model.keras")
    (campaign / "shipped").mkdir(exist_ok=True)  # keep_best made it
    (campaign / "shipped" / "manifest.json").write_text(json.dumps({"resnet20_prelu_lns/cifar10": entry}))
    (campaign / "shipped" / entry["file"]).write_bytes(b"prelu weights")
    with pytest.raises(SystemExit, match=f"^resnet20_prelu/cifar10 does not ship: ship the baseline the campaign "
                       f"fine-tunes first \\(train/ship_weights.py --run {campaign}/dorefa/seed0/baseline "
                       f"--name resnet20_prelu\\)$"):
        ship.promote(str(campaign))
    assert pretrained.read_manifest(str(weights)) == old and not (weights / entry["file"]).exists()

    base = dict(old[BASELINE], file="resnet20_prelu_cifar10.weights.h5", test_accuracy=0.83, holdout_accuracy=0.84)
    (weights / "manifest.json").write_text(json.dumps({**old, "resnet20_prelu/cifar10": base}))
    ship.promote(str(campaign))  # a new name replaces nothing: no reason needed
    new = pretrained.read_manifest(str(weights))
    assert (weights / entry["file"]).read_bytes() == b"prelu weights"
    assert new[KEY] == old[KEY] and new["resnet20_prelu_lns/cifar10"]["sha256"] == "c" * 64
    assert new["resnet20_prelu_lns/cifar10"]["difference"] == dict(
        to="resnet20_prelu/cifar10", test_accuracy=0.01, holdout_accuracy=0.01)
