"""Training methods (LNS, BONN, ...): what a method owns, and the registry of methods.

A method is a `Method` subclass registered with `@register`. It declares

- its suffix: the model `<base>_<suffix>` is `wrap(<base>, **options)`;
- its options, each once, as an `Option` (name, default, help, valid values):
  `wrap`'s keyword options and the settings of its hooks. Every option is a
  setting of `lns_larq.training.TrainConfig` and a flag of `train/fit.py` of the
  same name;
- what a run needs before `fit` (`prepare`: LNS's warm start, BONN's state);
- which callbacks it adds to `fit` (`callbacks`), and how `prepare`'s report reads
  (`summary`).

The trainer calls these hooks and never branches on a method's name, so a new
method is one module with a `Method` subclass plus one registration line:

```python
import lns_larq  # first: it selects Keras 2 (tf_keras), which Larq needs
import tensorflow as tf
from lns_larq import methods, models, training

@methods.register
class Shrink(methods.Method):
    name = "Shrink"
    suffix = "shrink"
    options = (methods.Option("shrink", 0.5, "Factor of every conv kernel at the start.", lower=0),)

    def wrap(self, model, shrink=0.5):
        copy = tf.keras.models.clone_model(model)
        copy.set_weights([shrink * w if w.ndim == 4 else w for w in model.get_weights()])
        return copy

model = models.get("resnet20_shrink", shrink=0.1)
config = training.TrainConfig(model="resnet20_shrink", shrink=0.1)  # train/fit.py --shrink 0.1
```
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "Method",
    "Option",
    "Run",
    "all_options",
    "define_flags",
    "get",
    "register",
    "registered",
    "settings_from_flags",
    "unregister",
]


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a method: a keyword option of its `wrap`, or a setting of its hooks.

    The same declaration gives the setting of `TrainConfig` (name, default), the
    flag of `train/fit.py` (name, type, default, help, valid values, aliases) and the
    check of a value (`check`).

    ```python
    alpha = Option("alpha", 1.0, "Weight of the noisy-supervision loss.", lower=0)
    alpha.check(-1.0)  # ValueError: alpha must be >= 0, got -1.0.
    ```

    # Arguments
        name: The option's name: `wrap`'s keyword, the `TrainConfig` field, the flag.
        default: Its value when not given.
        help: One line for the flag's help.
        type: `float`, `int`, `bool` or `str`; by default the type of `default`.
        choices: The valid values of a `str` option (a flag `DEFINE_enum`).
        lower: Least valid value (inclusive); `None`: no bound.
        upper: Greatest valid value (inclusive); `None`: no bound.
        above: A bound the value must exceed (exclusive); `None`: no bound.
        wrap: Whether it is a keyword option of the method's `wrap` (a model option);
            False for a setting that only the method's hooks read.
        exclusive: Whether a value other than the default is an error for a model of
            another method (a setting that would otherwise be silently ignored).
        aliases: Other flag names of the option (former names that commands use).
        shorthand: The name of a flag (`Method.shorthands`) whose value the option
            takes when its own flag is not given.
    """

    name: str
    default: Any
    help: str
    type: type | None = None
    choices: tuple = ()
    lower: float | None = None
    upper: float | None = None
    above: float | None = None
    wrap: bool = True
    exclusive: bool = False
    aliases: tuple = ()
    shorthand: str | None = None

    @property
    def value_type(self) -> type:
        """`type`, else the type of `default`."""
        return self.type or type(self.default)

    def check(self, value: Any) -> Any:
        """`value`, if it is valid for this option (`None` is, for a `None` default).

        # Raises
            ValueError: naming the option, its valid values and `value`.
        """
        if value is None and self.default is None:
            return value
        if self.value_type in (int, float) and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise ValueError(f"{self.name} must be a number, got {value!r}.")
        if self.choices and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {self.choices}, got {value!r}.")
        bounds = []
        if self.lower is not None and self.upper is not None:
            bounds.append((self.lower <= value <= self.upper, f"in [{self.lower:g}, {self.upper:g}]"))
        elif self.lower is not None:
            bounds.append((value >= self.lower, f">= {self.lower:g}"))
        elif self.upper is not None:
            bounds.append((value <= self.upper, f"<= {self.upper:g}"))
        if self.above is not None:
            bounds.append((value > self.above, f"> {self.above:g}"))
        for ok, condition in bounds:
            if not ok:  # also for NaN
                raise ValueError(f"{self.name} must be {condition}, got {value!r}.")
        return value

    def define_flag(self, flag_values: Any, help_suffix: str = "") -> None:
        """Define the absl flag of this option (and its aliases) in `flag_values`.

        The flag's default is the option's, or `None` for an option with a
        `shorthand` (its value then comes from the shorthand flag).
        """
        from absl import flags

        default = None if self.shorthand else self.default
        text = self.help + (f" Overrides --{self.shorthand}." if self.shorthand else "") + help_suffix
        kind = self.value_type
        lower = self.lower if self.lower is not None else self.above
        if kind is bool:
            flags.DEFINE_bool(self.name, default, text, flag_values=flag_values)
        elif self.choices:
            flags.DEFINE_enum(self.name, default, list(self.choices), text, flag_values=flag_values)
        elif kind is int:
            flags.DEFINE_integer(self.name, default, text, lower_bound=lower, upper_bound=self.upper,
                                 flag_values=flag_values)
        elif kind is float:
            flags.DEFINE_float(self.name, default, text, lower_bound=lower, upper_bound=self.upper,
                               flag_values=flag_values)
        else:
            flags.DEFINE_string(self.name, default, text, flag_values=flag_values)
        for alias in self.aliases:
            flags.DEFINE_alias(alias, self.name, flag_values=flag_values)


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
    """Base class of a training method; see the module docstring.

    # Attributes
        name: The method's name in messages (`"LNS"`).
        suffix: The suffix of its models' names (`"lns"`: `resnet20_lns`).
        options: Its `Option`s, each a `TrainConfig` setting and a `train/fit.py` flag.
        shorthands: Flags that set several options at once, as `Option`s that are no
            setting themselves (LNS's `--rho`: `rho_pos` and `rho_neg`, unless given).
        config_fields: `wrap` options read from a `TrainConfig` setting of another
            name, `{option: setting}` (a setting the trainer or another method owns).
    """

    name: str = ""
    suffix: str = ""
    options: tuple = ()
    shorthands: tuple = ()
    config_fields: dict = {}

    def option_names(self) -> frozenset:
        """The names of `wrap`'s keyword options."""
        return frozenset({o.name for o in self.options if o.wrap} | set(self.config_fields))

    def options_from_config(self, config: Any) -> dict:
        """`wrap`'s options as `config` (a `TrainConfig`) sets them."""
        options = {o.name: getattr(config, o.name) for o in self.options if o.wrap}
        options.update({option: getattr(config, field) for option, field in self.config_fields.items()})
        return options

    def wrap(self, model: Any, **options: Any) -> Any:
        """The method's version of `model` (a copy; `model` is left as it is)."""
        raise NotImplementedError

    def validate(self, config: Any) -> None:
        """Raise `ValueError` naming an invalid combination of this method's settings in
        `config`; each option's own valid values are checked by `Option.check`."""

    def prepare(self, run: Run) -> dict | None:
        """Called after the pretrained weights are loaded, before `fit`; returns a
        JSON-serialisable report for `metrics.json`, or None."""
        return None

    def callbacks(self, run: Run) -> list:
        """Keras callbacks the method adds to `fit`."""
        return []

    def summary(self, report: dict) -> str:
        """One line for a person about `prepare`'s report (the trainer prints it)."""
        return f"{self.suffix}: {json.dumps(report)}"


_REGISTRY: dict = {}  # suffix -> Method instance, in registration order


def register(method: type | Method) -> type | Method:
    """Register a `Method` (a subclass, instantiated without arguments, or an instance):
    the models `<base>_<suffix>` of `lns_larq.models` become available, its options
    settings of `TrainConfig` and flags of `train/fit.py`. Returns its argument, so it
    decorates a class.

    # Raises
        ValueError: if the suffix is empty, or an option's name is another registered
            method's option.
    """
    instance = method() if isinstance(method, type) else method
    if not instance.suffix:
        raise ValueError(f"{type(instance).__name__} has no suffix.")
    taken = {o.name: m.suffix for m in _REGISTRY.values() if m.suffix != instance.suffix for o in m.options}
    clashes = sorted(o.name for o in instance.options if o.name in taken)
    if clashes:
        raise ValueError(f"Options {clashes} of method {instance.suffix!r} are already another method's.")
    _REGISTRY[instance.suffix] = instance
    return method


def unregister(suffix: str) -> None:
    """Remove the method with `suffix` from the registry."""
    _REGISTRY.pop(suffix, None)


def get(suffix: str) -> Method:
    """The registered method with `suffix`.

    # Raises
        KeyError: if there is none.
    """
    return _REGISTRY[suffix]


def registered() -> dict:
    """`{suffix: Method}` of every registered method, in registration order."""
    return dict(_REGISTRY)


def all_options() -> Iterable[tuple[Method, Option]]:
    """`(method, option)` for every option of every registered method."""
    return [(method, option) for method in _REGISTRY.values() for option in method.options]


def define_flags(flag_values: Any) -> None:
    """Define the flag of every option and shorthand of every registered method in
    `flag_values` (absl `FlagValues`, e.g. `absl.flags.FLAGS`)."""
    for method in _REGISTRY.values():
        for option in (*method.shorthands, *method.options):
            option.define_flag(flag_values, f" [{method.name or method.suffix}]")


def settings_from_flags(flag_values: Any) -> dict:
    """`{option: value}` of every registered method's options in parsed `flag_values`.

    An option with a `shorthand` whose own flag was not given takes the shorthand's value.
    """
    settings = {}
    for _, option in all_options():
        value = flag_values[option.name].value
        if value is None and option.shorthand:
            value = flag_values[option.shorthand].value
        settings[option.name] = value
    return settings
