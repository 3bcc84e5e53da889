"""Training methods (LNS, BONN, ...) as one mechanism: what a method owns.

A method is a `Method` registered with `lns_larq.models.register_method`. It says

- how it wraps a base network (`wrap`, giving the model `<base>_<suffix>`), with
  which options, and where those come from in a `TrainConfig` (`config_fields`);
- what a run needs before `fit` (`prepare`: LNS's warm start, BONN's state);
- which callbacks it adds to `fit` (`callbacks`).

The trainer calls these hooks and never branches on a method's name, so a new
method is one module with a `Method` subclass plus one `register_method` line:

```python
class IRNet(lns_larq.methods.Method):
    suffix = "irnet"
    config_fields = {}

    def wrap(self, model):
        return model  # e.g. swap the quantizers for the error-decay estimator

lns_larq.models.register_method(IRNet())
```
"""

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass
class Run:
    """What a method's hooks may use of a training run.

    `evaluate(model)` gives `{"accuracy": ..., "loss": ...}` on the test data;
    `sample` is one training batch `(x, y)` for diagnostics; files of the run go to
    `write_dir` (the chief's `output_dir`), state that must survive a resume to
    `output_dir`.
    """

    model: Any
    config: Any
    train: Any
    test: Any
    output_dir: str
    write_dir: str
    steps_per_epoch: int | None
    evaluate: Callable
    sample: Any = None


class Method:
    """Base class of a training method; see the module docstring."""

    suffix = None
    # wrap's keyword option -> the TrainConfig field it is read from.
    config_fields = {}

    @property
    def options(self):
        """The names of `wrap`'s keyword options."""
        return frozenset(self.config_fields)

    def wrap(self, model, **options):
        """The method's version of `model` (a copy; `model` is left as it is)."""
        raise NotImplementedError

    def options_from_config(self, config):
        """`wrap`'s options as a `TrainConfig` sets them."""
        return {option: getattr(config, field) for option, field in self.config_fields.items()}

    def validate(self, config):
        """Raise `ValueError` naming an invalid setting of this method in `config`."""

    def prepare(self, run):
        """Called after the pretrained weights are loaded, before `fit`; returns a
        JSON-serialisable report for `metrics.json`, or None."""
        return None

    def callbacks(self, run):
        """Keras callbacks the method adds to `fit`."""
        return []
