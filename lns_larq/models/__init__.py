"""Model registry: `get(name, **options)` and `available()`.

Every base model `<name>` with binary layers also exists as `<name>_<suffix>` for
every registered training method (`lns_larq.methods`): `<name>_lns` is the same
network with its binarized convolutions' kernel quantizers replaced by
`LNSQuantizer` (`lnsify`), `<name>_bonn` the network trained with BONN's losses.
The method's options (`Method.options`) go to it, the rest to the base model.

```python
model = lns_larq.models.get("resnet20_lns", quantizer="dorefa", alpha=1.0, rho_pos=0.005)
```
"""

# The built-in methods (bonn, lns) register themselves with `@methods.register`, as
# any other method does when its module is imported.
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from lns_larq import bonn, lns, methods, pretrained  # noqa: F401
from lns_larq.models.alexnet import alexnet
from lns_larq.models.bireal import resnet18_bireal
from lns_larq.models.resnet import resnet8, resnet20, resnet20_fp, resnet20_hardtanh, resnet20_prelu

_BASE_MODELS = {
    "resnet20": resnet20,
    "resnet8": resnet8,
    "resnet20_fp": resnet20_fp,
    "resnet20_prelu": resnet20_prelu,
    "resnet20_hardtanh": resnet20_hardtanh,
    "resnet18_bireal": resnet18_bireal,
    "alexnet": alexnet,
}
# Full-precision models have no binary conv to convert.
_NO_METHOD = {"resnet20_fp"}


def register(name: str, builder: Callable[..., tf.keras.Model], binary: bool = True) -> None:
    """Add a base model builder `builder(**options) -> tf.keras.Model` to the registry."""
    _BASE_MODELS[name] = builder
    if not binary:
        _NO_METHOD.add(name)


def register_method(method: methods.Method) -> methods.Method:
    """Add a `lns_larq.methods.Method` (`lns_larq.methods.register`):
    `<base>_<suffix>` is `method.wrap(base_model, **options)`."""
    return methods.register(method)


def method(name: str) -> methods.Method | None:
    """The `Method` of model `name`, or None for a base model."""
    _, suffix = split_name(name)
    return None if suffix is None else methods.get(suffix)


def has_methods(base: str) -> bool:
    """Whether the base model `base` has method variants (it has binary layers)."""
    return base not in _NO_METHOD


def available() -> list[str]:
    """Names `get` accepts, sorted."""
    names = set(_BASE_MODELS)
    for base in set(_BASE_MODELS) - _NO_METHOD:
        names.update(f"{base}_{suffix}" for suffix in methods.registered())
    return sorted(names)


def split_name(name: str) -> tuple[str, str | None]:
    """`"resnet20_lns"` -> `("resnet20", "lns")`; a base name -> `(name, None)`."""
    if name in _BASE_MODELS:
        return name, None
    for suffix in methods.registered():
        base = name[: -len(suffix) - 1]
        if name.endswith("_" + suffix) and base in _BASE_MODELS and base not in _NO_METHOD:
            return base, suffix
    raise ValueError(f"Unknown model {name!r}; available: {', '.join(available())}.")


def get(name: str, weights: str | None = None, **options: Any) -> tf.keras.Model:
    """Build the model `name` with `options` (see `available()`).

    `weights`: `None` for a random initialisation, or the name of weights that
    ship with the package (`"cifar10"`; see `lns_larq.pretrained`), whose file's
    SHA-256 is checked. For a method variant such as `resnet20_lns` these are its
    inference network: the base architecture holding the binary weights the
    method trained (the mapping networks are training-only), named `name`.

    ```python
    model = lns_larq.models.get("resnet20", weights="cifar10")
    ```
    """
    base, method = split_name(name)
    if weights is not None:
        item = pretrained.entry(name, weights)
        model = _BASE_MODELS[base](**pretrained.build_options(item, options))
        model.load_weights(pretrained.checked_path(item))
        model._name = name
        return model
    if method is None:
        return _BASE_MODELS[base](**options)
    wrapper = methods.get(method)
    method_options = {k: options.pop(k) for k in list(options) if k in wrapper.option_names()}
    return wrapper.wrap(_BASE_MODELS[base](**options), **method_options)


__all__ = ["available", "get", "has_methods", "method", "register", "register_method", "split_name"]
