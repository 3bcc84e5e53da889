"""`tf.distribute` strategies by name, for `train/fit.py --strategy`.

| name | strategy | devices |
|---|---|---|
| `default` | `tf.distribute.get_strategy()` | one device (what TensorFlow picks) |
| `mirrored` | `MirroredStrategy` | every GPU of this machine (the CPU if none) |
| `multi_worker` | `MultiWorkerMirroredStrategy` | every GPU of every worker in `TF_CONFIG` |
| `tpu` | `TPUStrategy` | the TPU cores of `tpu` (a name or `grpc://` address) |

Build and compile the model inside `strategy.scope()` and feed `fit` a dataset
batched with the *global* batch size: Keras splits every batch into
`strategy.num_replicas_in_sync` equal parts, averages the cross-entropy over the
global batch, scales `model.losses` (the LNS auxiliary losses, computed on every
replica) by `1 / num_replicas_in_sync` and sums the replicas' gradients, so a step
equals the single-device step on the same global batch (tested in
`tests/test_distribute.py`; batch normalisation, which normalises over each
replica's part, is the exception).

```python
strategy = lns_larq.distribute.get_strategy("mirrored")
with strategy.scope():
    model = lns_larq.models.get("resnet18_bireal_lns")
    model.compile("sgd", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(dataset_with_global_batches, epochs=1)
```
"""

import json
import os

import tensorflow as tf

from lns_larq.errors import first_line

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")

__all__ = ["STRATEGIES", "StrategyError", "get_strategy", "is_chief", "worker_index"]


class StrategyError(ValueError):
    """A strategy cannot be set up (unknown name, missing `TF_CONFIG`, no TPU)."""


_TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)


def _tf_config():
    """The parsed `TF_CONFIG` of a multi-worker run, checked for what MWMS needs."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise StrategyError(
            "strategy multi_worker needs the TF_CONFIG environment variable on every "
            f"worker, e.g. {_TF_CONFIG_EXAMPLE} (index 0 on the first host, 1 on the second)."
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise StrategyError(f"TF_CONFIG is not valid JSON ({e}); expected e.g. {_TF_CONFIG_EXAMPLE}.") from None
    if not isinstance(config, dict):
        raise StrategyError(f"TF_CONFIG must be a JSON object; expected e.g. {_TF_CONFIG_EXAMPLE}.")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise StrategyError(f"TF_CONFIG needs a 'cluster' and a 'task' object, e.g. {_TF_CONFIG_EXAMPLE}.")
    kind, index = task.get("type"), task.get("index")
    members = cluster.get(kind)
    if not isinstance(members, list) or not isinstance(index, int) or not 0 <= index < len(members):
        raise StrategyError(
            f"TF_CONFIG task {task} is not in its cluster {cluster}: 'task.type' must name "
            "a job of 'cluster' ('worker' or 'chief') and 'task.index' a position in it."
        )
    return config


def get_strategy(name: str = "default", tpu: str | None = None) -> tf.distribute.Strategy:
    """The `tf.distribute.Strategy` called `name` (one of `STRATEGIES`).

    Call it at the start of the program: `multi_worker` and `tpu` must be set up
    before TensorFlow runs any op, and `mirrored` sees the devices that exist then.

    # Arguments
        name: `"default"`, `"mirrored"`, `"multi_worker"` or `"tpu"`.
        tpu: For `"tpu"`: the TPU name or `grpc://host:port`; `None` looks it up in
            the environment (Cloud TPU VM, `TPU_NAME`).

    # Raises
        StrategyError: for an unknown name, a missing or malformed `TF_CONFIG`, or
            no reachable TPU.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        _tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            where = f"TPU {tpu!r}" if tpu else "a TPU in this environment (TPU_NAME, Cloud TPU VM)"
            raise StrategyError(f"strategy tpu: cannot reach {where} ({first_line(e)}).") from None
        return tf.distribute.TPUStrategy(resolver)
    raise StrategyError(f"Unknown strategy {name!r}; choose one of {STRATEGIES}.")


def worker_index(strategy: tf.distribute.Strategy) -> int:
    """This worker's index in a multi-worker cluster; 0 on a single machine."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 0
    return resolver.task_id or 0


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, except on the workers
    other than the chief (`worker` 0, or the `chief` job) of a multi-worker run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief
