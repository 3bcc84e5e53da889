"""What the scripts of `train/` share: a one-line error exit, before TensorFlow loads.

A script imports it as `from cli import fail` (Python puts the script's folder
first on the module path), so it can check its arguments and fail fast, before
`import lns_larq` loads TensorFlow.

```python
from cli import fail

fail("--model_path runs/x/model.keras: no such file")  # export.py: error: --model_path ...
```

`model_file` is the check that `evaluate.py` and `export.py` make of their
positional arguments and `--model_path` before anything else; `write_json` writes
a benchmark's figures.
"""

import json
import os
import sys
from typing import NoReturn

__all__ = ["fail", "model_file", "model_files", "write_json"]


def fail(message: str) -> NoReturn:
    """Exit with status 1, printing `<script>: error: <message>` to stderr."""
    sys.exit(f"{os.path.basename(sys.argv[0])}: error: {message}")


def model_file(argv, model_path) -> str:
    """`model_path` if `argv` has no stray positional argument and `model_path` names a
    file; otherwise `fail` with the problem (checked before TensorFlow loads)."""
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    if not model_path:
        fail("--model_path is required")
    if not os.path.isfile(model_path):
        fail(f"--model_path {model_path}: no such file")
    return model_path


def model_files(argv) -> list[str]:
    """The saved models a script takes as its positional arguments (`argv[1:]`), if
    there is one or more and each is a file; otherwise `fail` with the problem."""
    paths = argv[1:]
    if not paths:
        fail("give one or more saved models (.keras or .h5)")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        fail(f"no such file: {', '.join(missing)}")
    return paths


def write_json(path: str, report: dict) -> None:
    """Write `report` to `path` as JSON (its folder made if needed) and say so."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"written to {path}")
