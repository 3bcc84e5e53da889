"""Ship a trained model's weights with the package: `save`, behind `train/ship_weights.py`.

What ships is a model's inference network (an LNS model is baked first, see
`lns_larq.export.bake`), written to `lns_larq/weights/` with its entry in the
manifest, from which `lns_larq.pretrained` and `lns_larq.models.get(name,
weights=...)` load it.

```python
item = lns_larq.shipping.save(model, "resnet20_lns", "cifar10", "dorefa", x_test, y_test,
                              data="CIFAR-10", command="python train/fit.py ...", directory="/tmp/weights")
```
"""

import dataclasses
import datetime
import json
import os

import numpy as np
import tensorflow as tf

from lns_larq import export, models, pretrained
from lns_larq.quantizers import lns_layers

__all__ = ["replace", "require_why", "save", "state_difference", "write_manifest"]


def save(model: tf.keras.Model, name: str, weights: str, quantizer: str, images: np.ndarray, labels: np.ndarray,
         data: str, command: str, directory: str = pretrained.WEIGHTS_DIR,
         holdout: "tuple[np.ndarray, np.ndarray] | None" = None, why: str | None = None) -> pretrained.Pretrained:
    """Ship `model`'s inference weights as `lns_larq.models.get(name, weights=weights)`.

    A method variant (LNS) is baked first, so the file holds the base
    architecture's weights; `quantizer` is the model's weight quantizer
    (`"dorefa"`, `"xnor"`, `"binarynet"`), an option the weights need. The file is
    checked by loading it into a fresh base model, whose accuracy on `images`
    (uint8) and `labels` is what the manifest states, over all of them and over
    the first 1,000; and on `holdout`, the `(images, labels)` the run held out to
    select its epoch, if given.

    Weights that replace others under the same name keep a record of those in
    `previous` (`replace`), with `why`.

    # Returns
        The `Pretrained` entry written to `directory/manifest.json`.

    # Raises
        ValueError: if the weights do not load into `name`'s base architecture
            (e.g. a `resnet20_prelu` model shipped as `resnet20`); nothing is
            written then.
    """
    base, _ = models.split_name(name)
    if lns_layers(model):
        model = export.bake(model)
    os.makedirs(directory, exist_ok=True)
    file = f"{name}_{weights}.weights.h5"
    path = os.path.join(directory, file)
    fresh = models.get(base, quantizer=quantizer)

    def shapes(m):
        return [tuple(w.shape) for w in m.weights]

    # Weights of another network must not overwrite the ones that ship under
    # `name`. The .weights.h5 format loads by layer name and ignores layers the
    # file has in excess: a resnet20_prelu's weights load silently into resnet20,
    # so the weights are compared first. They are then written aside and loaded,
    # and replace the shipped file only once they load.
    partial = os.path.join(directory, f".partial.{file}")  # .weights.h5: the format the name picks
    try:
        if shapes(model) != shapes(fresh):
            raise ValueError(f"{len(model.weights)} weight arrays against {len(fresh.weights)}, or other shapes")
        model.save_weights(partial)
        fresh.load_weights(partial)
    except ValueError as e:
        if os.path.exists(partial):
            os.remove(partial)
        reason = str(e).strip().splitlines()[0]
        raise ValueError(f"cannot ship {model.name} as {name}: its weights do not load into {base} ({reason})"
                         ) from None
    os.replace(partial, path)

    def correct(x, y):
        predictions = np.argmax(fresh.predict(pretrained.preprocess(x), batch_size=500, verbose=0), axis=-1)
        return predictions == np.asarray(y).reshape(-1)

    test = correct(images, labels)
    item = pretrained.Pretrained(
        file=file, sha256=pretrained.sha256(path), options=dict(quantizer=quantizer),
        test_accuracy=float(test.mean()), first_1000_accuracy=float(test[:1000].mean()),
        data=data, command=command,
        holdout_accuracy=None if holdout is None else float(correct(*holdout).mean()),
    )
    key = f"{name}/{weights}"
    manifest = replace(pretrained.read_manifest(directory), key, dataclasses.asdict(item), why)
    item = pretrained.Pretrained(**manifest[key])
    write_manifest(directory, manifest)
    if directory == pretrained.WEIGHTS_DIR:
        pretrained.register(name, weights, item)
    return item


def require_why(manifest: dict, key: str, why: str | None, where: str = "") -> None:
    """Raise a ValueError if `key` ships in `manifest` and no `why` says why it is
    replaced: users of the old weights read it in the new entry's `previous`."""
    if key in manifest and not why:
        raise ValueError(f"{key} already ships{where}; say why it is replaced with --why")


def replace(manifest: dict, key: str, entry: dict, why: str | None) -> dict:
    """`manifest` with `entry` under `key`. If that replaces other weights (another
    SHA-256), the old entry's file, SHA-256, figures and command go first in the
    entry's `previous`, with today's date (`replaced`) and `why`; earlier records
    stay behind it. `entry`'s own `previous` is not kept: the history is that of
    `manifest`'s key (a candidate kept elsewhere brings no history of its own)."""
    old = manifest.get(key)
    history = list(old.get("previous", [])) if old else []
    if old and old["sha256"] != entry["sha256"]:
        record = {field: old.get(field) for field in ("file", "sha256", "test_accuracy", "holdout_accuracy",
                                                       "command")}
        history.insert(0, {**record, "replaced": datetime.date.today().isoformat(), "why": why})
    manifest[key] = {**entry, "previous": history}
    return manifest


def state_difference(manifest: dict, key: str, to: str) -> dict:
    """`manifest` with entry `key`'s `difference` to entry `to` set: its test and
    hold-out accuracy minus `to`'s, e.g. the LNS weights against the baseline they
    were fine-tuned from, stated whatever its sign."""
    entry, base = manifest[key], manifest[to]
    # Both figures count images of the same splits, so the difference is a whole
    # number of images; rounding removes float noise only.
    entry["difference"] = {"to": to, **{
        figure: None if entry.get(figure) is None or base.get(figure) is None
        else round(entry[figure] - base[figure], 6)
        for figure in ("test_accuracy", "holdout_accuracy")
    }}
    return manifest


def write_manifest(directory: str, manifest: dict) -> None:
    """Write `manifest` (`{"<name>/<weights>": entry}`, as `pretrained.read_manifest`
    gives it) to `directory/manifest.json`, and `directory/README.md`, which says
    what each file is; e.g. to move an entry measured by `save` into another
    directory together with its file."""
    with open(os.path.join(directory, pretrained.MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    _write_readme(directory, manifest)


def _write_readme(directory, manifest):
    """`directory/README.md`: what each shipped file is, beside the files."""
    lines = [
        "# Shipped weights",
        "",
        "Written by `train/ship_weights.py`; load with "
        "`lns_larq.models.get(name, weights=...)`, which checks each file's SHA-256 "
        "(`lns_larq/pretrained.py`). Inputs: `lns_larq.pretrained.preprocess(uint8_images)`.",
        "",
        "| model | weights | file | test accuracy % | hold-out accuracy % | first 1,000 test images % "
        "| Δ to the weights it was fine-tuned from, points | data | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, item in sorted(manifest.items()):
        name, weights = key.split("/")
        lines.append(
            f"| `{name}` | `{weights}` | `{item['file']}` | {100 * item['test_accuracy']:.2f} | "
            + _percent(item.get("holdout_accuracy"), ".2f")
            + f" | {100 * item['first_1000_accuracy']:.1f} | {_difference(item.get('difference'))} "
            f"| {item['data']} | `{item['command']}` |"
        )
    earlier = [(key, record) for key, item in sorted(manifest.items()) for record in item.get("previous", [])]
    if earlier:
        lines += [
            "",
            "## Earlier weights under these names",
            "",
            "Files that shipped under a name before the one above, newest first. A file whose SHA-256 "
            "(`lns_larq.pretrained.sha256(path)`) is listed here is one of these.",
            "",
            "| model | weights | SHA-256 | test accuracy % | hold-out accuracy % | replaced | why | command |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, record in earlier:
            name, weights = key.split("/")
            lines.append(
                f"| `{name}` | `{weights}` | `{record['sha256']}` | {_percent(record.get('test_accuracy'), '.2f')} | "
                f"{_percent(record.get('holdout_accuracy'), '.2f')} | {record['replaced']} | {record['why'] or '–'} | "
                f"`{record['command']}` |")
    with open(os.path.join(directory, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _percent(fraction, spec):
    return "–" if fraction is None else f"{100 * fraction:{spec}}"


def _difference(difference):
    if not difference:
        return "–"
    return (f"`{difference['to']}`: test {_percent(difference['test_accuracy'], '+.2f')}, "
            f"hold-out {_percent(difference['holdout_accuracy'], '+.2f')}")
