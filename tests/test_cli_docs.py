"""docs/cli.md is generated from train/fit.py's absl flags (train/cli_docs.py) and
must be regenerated whenever a flag changes."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI_DOCS = os.path.join(ROOT, "train", "cli_docs.py")
FIT = os.path.join(ROOT, "train", "fit.py")


def _cli_docs(*args):
    return subprocess.run([sys.executable, CLI_DOCS, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def test_docs_cli_md_is_up_to_date_with_the_flags_of_fit_py():
    result = _cli_docs("--check")
    assert result.returncode == 0, (
        "docs/cli.md is out of date with train/fit.py's flags; run `python train/cli_docs.py`.\n"
        + result.stdout + result.stderr
    )


def test_a_changed_flag_is_documented_in_its_group_and_fails_the_check(tmp_path):
    """A copy of fit.py with one flag added to its first group, a new group at the
    end and one flag removed: the generator follows, the methods' options keep
    their own groups, and the committed page then fails the check."""
    with open(FIT) as f:
        source = f.read()
    assert 'flags.DEFINE_integer("verbose"' in source and 'flags.DEFINE_integer("seed"' in source
    source = source.replace('flags.DEFINE_integer("verbose"',
                            'flags.DEFINE_float("test_only_gain", 0.25, "A | flag <added> here.")\n'
                            'flags.DEFINE_integer("verbose"')
    source = source.replace('\n\ndef config_from_flags',
                            '\n# Extras (a new group)\n'
                            'flags.DEFINE_list("test_only_list", ["a", "b"], "A list flag.")\n'
                            '\n\ndef config_from_flags')
    source = "\n".join(line for line in source.split("\n") if not line.startswith('flags.DEFINE_integer("seed"'))
    fit_copy = tmp_path / "fit.py"
    fit_copy.write_text(source)
    out = tmp_path / "cli.md"
    result = _cli_docs("--fit", str(fit_copy), "--output", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    text = out.read_text()
    general = text.index("\n## General\n")
    gain = text.index("| `--test_only_gain` | `0.25` | A \\| flag &lt;added&gt; here. |")
    extras = text.index("\n## Extras (a new group)\n")
    lns = text.index("\n## LNS (models named *_lns)\n")
    bonn = text.index("\n## BONN (models named *_bonn)\n")
    assert general < gain < extras < text.index("| `--test_only_list` | `a,b` | A list flag. |") < bonn < lns
    assert lns < text.index("| `--alpha` |") < text.index("| `--warmup_agreement` |")
    assert bonn < text.index("| `--bonn_lambda` |") < lns
    assert "`--seed`" not in text

    check = _cli_docs("--check", "--fit", str(fit_copy), "--output", os.path.join(ROOT, "docs", "cli.md"))
    assert check.returncode == 1
    assert "out of date" in check.stdout and "test_only_gain" in check.stdout
