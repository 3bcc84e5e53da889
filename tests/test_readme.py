"""The README's code runs as printed: a user copies it first."""

import os

import larq as lq

from lns_larq import LNSQuantizer

from .conftest import ROOT
from .test_examples import BLOCK


def _python_block(heading):
    """The first ```python block of the README after the line `heading`."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    start = text.index(f"\n{heading}\n")
    return BLOCK.search(text, start).group(1)


def test_lns_in_your_own_larq_model_runs_as_printed(tmp_path, monkeypatch):
    """The README's "LNS in your own Larq model" snippet, executed as it stands: it
    must convert both binary convs to LNS, fine-tune, and export both as
    LceBconv2d (it fails if any step of that API changes or breaks)."""
    monkeypatch.chdir(tmp_path)  # it writes lns.keras and lns.tflite into the working directory
    names = {"__name__": "__readme__"}
    exec(compile(_python_block("## LNS in your own Larq model"), "README.md", "exec"), names)
    model, report = names["model"], names["report"]
    lns = [layer for layer in model.layers if isinstance(layer, lq.layers.QuantConv2D)]
    assert len(lns) == 2 and all(isinstance(layer.kernel_quantizer, LNSQuantizer) for layer in lns)
    assert report.ok and report.binary_layers == report.bconv_ops == 2 and not report.unconverted
    assert (tmp_path / "lns.keras").stat().st_size > 0 and (tmp_path / "lns.tflite").stat().st_size > 0
