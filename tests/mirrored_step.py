"""One training step of an LNS model under `MirroredStrategy` vs on one device.

Run by `tests/test_distribute.py` in a fresh process: the CPU is split into two
logical devices, which must happen before TensorFlow initialises its devices.

    python tests/mirrored_step.py   # prints one line "RESULT {json}"
    python tests/mirrored_step.py --fit --strategy mirrored ...   # train/fit.py on 2 CPUs

The model (no batch normalisation, which normalises over each replica's part of
the batch) has two LNS convs, one with a layer-wise and one with a channel-wise
scale, whose auxiliary losses are in `model.losses`. The same initial weights take
one SGD step on the same global batch of 8 images, once on one device and once
mirrored over 2 replicas (4 images each). Keras computes `model.losses` on every
replica, so unless it scales them by 1 / replicas their gradient would count twice.
Reported: both losses, the loss computed by hand (mean cross-entropy over the 8
images + the auxiliary losses once), the largest weight difference after the step,
and the largest weight change the auxiliary loss alone makes (what a wrong scaling
would change).
"""

import json
import sys

import lns_larq  # noqa: F401  # isort: skip  (Keras 2 before TensorFlow)
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import larq as lq  # noqa: E402
import numpy as np  # noqa: E402

LR = 0.5
BATCH = 8


def build_model():
    """A small binary network, then `lnsify`: conv -> LNS conv (layer scale) ->
    PReLU -> LNS conv (channel scale, stride 2) -> pool -> dense."""
    binary = dict(padding="same", pad_values=1.0, use_bias=False, input_quantizer="ste_sign",
                  kernel_constraint="weight_clip")
    inputs = tf.keras.Input((12, 12, 3))
    x = tf.keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = lq.layers.QuantConv2D(16, 3, kernel_quantizer="dorefa_sign", name="binary1", **binary)(x)
    x = tf.keras.layers.PReLU(shared_axes=[1, 2], name="prelu")(x)
    x = lq.layers.QuantConv2D(16, 3, strides=2, kernel_quantizer="magnitude_aware_sign",
                              name="binary2", **binary)(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(5, name="logits")(x)
    return lns_larq.lnsify(tf.keras.Model(inputs, outputs), alpha=2.0, rho_pos=0.05, width=1.0)


def compile_model(model):
    model.compile(tf.keras.optimizers.SGD(LR), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def weights(model):
    """Latent values of all weights, in `model.weights` order (the names of a second
    copy of the model get other suffixes)."""
    return [tf.convert_to_tensor(getattr(w, "latent_variable", w)).numpy() for w in model.weights]


def one_step(model, x, y):
    dataset = tf.data.Dataset.from_tensors((x, y))  # one global batch of BATCH images
    history = model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    return float(history.history["loss"][0]), weights(model)


def fit(args):
    """`train/fit.py args` with the two logical CPUs; prints the replicas used."""
    import os
    import runpy

    from lns_larq import distribute

    get_strategy = distribute.get_strategy

    def reporting_get_strategy(*a, **k):
        strategy = get_strategy(*a, **k)
        print(f"REPLICAS {strategy.num_replicas_in_sync}", flush=True)
        return strategy

    distribute.get_strategy = reporting_get_strategy
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train", "fit.py")
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(script))  # as `python train/fit.py` has it: train/cli.py importable
    runpy.run_path(script, run_name="__main__")


def main():
    if sys.argv[1:2] == ["--fit"]:
        return fit(sys.argv[2:])
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 12, 12, 3)).astype(np.float32)
    y = rng.integers(0, 5, BATCH)

    single = build_model()  # random mapping networks: every mapping weight has a gradient
    initial = single.get_weights()

    # The loss by hand: mean cross-entropy over the global batch + the aux losses once.
    with tf.GradientTape() as tape:
        logits = single(x, training=True)
        ce = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        aux = tf.add_n(single.losses)
    aux_grads = tape.gradient(aux, single.trainable_weights)
    aux_effect = max(float(np.max(np.abs(LR * g.numpy()))) for g in aux_grads if g is not None)

    compile_model(single)
    loss_single, after_single = one_step(single, x, y)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = build_model()
        mirrored.set_weights(initial)
        compile_model(mirrored)
    loss_mirrored, after_mirrored = one_step(mirrored, x, y)

    shapes_match = [a.shape for a in after_single] == [b.shape for b in after_mirrored]
    max_update = max(float(np.max(np.abs(a - b))) for a, b in zip(after_single, initial))
    max_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(after_single, after_mirrored))
    changed = sum(bool(np.any(a != b)) for a, b in zip(after_single, initial))
    result = dict(
        replicas=strategy.num_replicas_in_sync,
        aux_terms=len(single.losses),
        loss_by_hand=float(ce + aux),
        aux_loss=float(aux),
        loss_single=loss_single,
        loss_mirrored=loss_mirrored,
        max_update=max_update,
        max_weight_diff=max_diff,
        aux_update=aux_effect,
        weights=len(after_single),
        weights_changed=changed,
        weight_shapes_match=shapes_match,
    )
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
