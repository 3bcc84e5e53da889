"""What the scripts of `train/` share: a one-line error exit, before TensorFlow loads.

A script imports it as `from cli import fail` (Python puts the script's folder
first on the module path), so it can check its arguments and fail fast, before
`import lns_larq` loads TensorFlow.

```python
from cli import fail

fail("--model_path runs/x/model.keras: no such file")  # export.py: error: --model_path ...
```
"""

import os
import sys
from typing import NoReturn

__all__ = ["fail"]


def fail(message: str) -> NoReturn:
    """Exit with status 1, printing `<script>: error: <message>` to stderr."""
    sys.exit(f"{os.path.basename(sys.argv[0])}: error: {message}")
