"""A method declares each option once; `TrainConfig`, `train/fit.py`'s flags, the
registry and the checks all derive from that declaration."""

import os
import subprocess
import sys
import textwrap

import pytest
from absl import flags

from lns_larq import methods, models, training
from lns_larq.lns import LNS
from lns_larq.quantizers import LNSQuantizer

from .conftest import ROOT


def _flags(*argv):
    flag_values = flags.FlagValues()
    methods.define_flags(flag_values)
    flag_values(["fit.py", *argv])
    return methods.settings_from_flags(flag_values)


def test_option_check():
    option = methods.Option("gain", 1.0, "A gain.", lower=0, upper=2)
    assert option.check(0.5) == 0.5 and option.value_type is float
    for bad, message in [(-1.0, r"gain must be in \[0, 2\], got -1.0"), (float("nan"), "got nan"),
                         ("x", "gain must be a number")]:
        with pytest.raises(ValueError, match=message):
            option.check(bad)
    with pytest.raises(ValueError, match=r"must be > 0, got 0"):
        methods.Option("lr", 0.1, "", above=0).check(0)
    with pytest.raises(ValueError, match=r"kind must be one of \('a', 'b'\), got 'c'"):
        methods.Option("kind", "a", "", choices=("a", "b")).check("c")
    assert methods.Option("rate", None, "", type=float, lower=0).check(None) is None


def test_lns_options_are_declared_once_with_the_quantizers_names():
    """The quantizer, TrainConfig and the flags take the same names and defaults."""
    config, quantizer, from_flags = training.TrainConfig(), LNSQuantizer(), _flags()
    for option in LNS.options:
        assert getattr(config, option.name) == option.default
        if option.wrap and option.default is not None:
            assert getattr(quantizer, option.name) == option.default
    assert quantizer.rho_neg == quantizer.rho_pos == from_flags["rho_neg"] == 0.005  # rho_neg defaults to rho_pos
    assert from_flags["width"] == config.width == 2.0 and from_flags["bonn_lambda"] == config.bonn_lambda
    assert not hasattr(config, "mapping_width")


def test_old_flag_names_and_the_rho_shorthand():
    settings = _flags("--mapping_width=0.5", "--mapping_decay=0.01")
    assert (settings["width"], settings["decay"]) == (0.5, 0.01)
    # --rho sets both rates, unless one is given on its own.
    settings = _flags("--rho=0.01", "--rho_pos=0.02")
    assert (settings["rho_pos"], settings["rho_neg"]) == (0.02, 0.01)
    settings = _flags("--gated", "--loss_input=output", "--warmup_epochs=1", "--warmup_agreement=0.995",
                      "--warmup_layer_agreement=0", "--alpha=0")
    assert settings["gated"] is True and settings["loss_input"] == "output" and settings["warmup_epochs"] == 1
    assert (settings["warmup_agreement"], settings["warmup_layer_agreement"], settings["alpha"]) == (0.995, 0, 0)
    with pytest.raises(flags.IllegalFlagValueError):
        _flags("--loss_input=logits")


# A toy method: one module with a `Method` subclass, one option, one registration line.
TOY = textwrap.dedent('''
    from lns_larq import methods

    WRAPPED = []


    @methods.register
    class Toy(methods.Method):
        name = "Toy"
        suffix = "toy"
        options = (methods.Option("toy_gain", 1.0, "How much the toy scales nothing.", lower=0),)

        def wrap(self, model, toy_gain=1.0):
            WRAPPED.append(toy_gain)
            print(f"toy wraps {model.name} with toy_gain={toy_gain}")
            return model
''')


@pytest.fixture
def toy(tmp_path, monkeypatch):
    (tmp_path / "toy_method.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import toy_method

    yield toy_method
    methods.unregister("toy")
    sys.modules.pop("toy_method", None)


def test_a_new_method_with_an_option_is_one_module_and_one_registration_line(toy, tmp_path):
    assert "resnet8_toy" in models.available()
    models.get("resnet8_toy", toy_gain=3.0)
    assert toy.WRAPPED == [3.0]
    # The option is a TrainConfig setting, checked as declared...
    config = training.TrainConfig(model="resnet8_toy", toy_gain=0.5, dataset="digits", epochs=1,
                                  steps_per_epoch=2, batch_size=16, output_dir=str(tmp_path / "run"), verbose=0)
    assert training.TrainConfig().toy_gain == 1.0
    with pytest.raises(training.ConfigError, match="toy_gain must be >= 0"):
        training.TrainConfig(model="resnet8_toy", toy_gain=-1.0).validate()
    # ...a flag...
    assert _flags("--toy_gain=0.25")["toy_gain"] == 0.25
    # ...and reaches `wrap` in a run, recorded with the run's config.
    metrics = training.run(config)
    assert toy.WRAPPED[-1] == 0.5 and metrics["config"]["toy_gain"] == 0.5


def test_fit_py_has_the_flag_of_a_method_registered_before_it(toy, tmp_path):
    fit = os.path.join(ROOT, "train", "fit.py")
    # As `python train/fit.py` with the toy's module imported first (train/ on the path, as Python puts it).
    script = ("import os, sys, runpy; sys.path.insert(0, sys.argv.pop(1)); import toy_method; "
              "sys.argv[0] = sys.argv.pop(1); sys.path.insert(0, os.path.dirname(sys.argv[0])); "
              "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), fit, "--model", "resnet8_toy", "--toy_gain", "0.5",
         "--summary"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "toy wraps resnet8_dorefa with toy_gain=0.5" in result.stdout


def test_unknown_setting_and_option_clash():
    with pytest.raises(TypeError, match="no setting 'mapping_widht'"):
        training.TrainConfig(mapping_widht=1.0)

    class Clash(methods.Method):
        suffix = "clash"
        options = (methods.Option("alpha", 0.0, "Taken by LNS."),)

    with pytest.raises(ValueError, match=r"\['alpha'\] of method 'clash' are already another method's"):
        methods.register(Clash)
    assert "clash" not in methods.registered()


def test_the_warm_start_reads_as_one_line():
    report = {"agreement": 0.99991, "disagreement_per_layer": {"conv_a": 0.0, "conv_b": 0.0021},
              "labels_test_accuracy": 0.8123, "warmup_test_accuracy": 0.8119, "accuracy_change": -0.0004,
              "epochs": 1, "stop_agreement": 0.9999, "stop_layer_agreement": 0.999, "stopped_at_step": None,
              "objective": "noisy"}
    line = LNS().summary(report)
    assert "\n" not in line and "{" not in line
    for part in ("99.991 %", "ran to its step cap", "81.23 % at the labels, 81.19 % after",
                 "before agreement 0.9999 overall and 0.999 per layer: give it more steps",
                 "below 0.999: conv_b 0.9979"):
        assert part in line, line
    assert "conv_a" not in line
    assert "stopped at step 120" in LNS().summary({**report, "stopped_at_step": 120})
    assert "give it more steps" not in LNS().summary({**report, "stopped_at_step": 120})
