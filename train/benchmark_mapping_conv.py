"""Times three exact formulations of the mapping's 3x3 convs on 3x3 filter images.

The mapping (paper Sec. 4.1) runs 3x3 convs, padding "same", over a layer's
filters seen as 3x3 images. Of a conv's 81 multiply-adds per channel pair and
filter, only 49 meet a real tap; the rest meet the zero padding. This script asks
whether skipping them makes the mapping, and so the LNS step, faster
(docs/benchmarks.md, "Where the LNS step's extra time goes"):

- `conv`: `tf.nn.conv2d` (what `lns_larq.quantizers.mapping_network` uses);
- `dense`: one matmul, the kernel scattered into a (9 c_in, 9 c_out) block matrix
  (81 multiply-adds, as the conv);
- `taps`: three batched matmuls, the output positions grouped by their 4, 6 or 9
  valid taps (49 multiply-adds).

Each times forward and backward of the mapping's three convs (ReLU between) in
one `tf.function`, the formulations interleaved round by round, and checks that
their gradients agree with the conv's.

    .venv/bin/python train/benchmark_mapping_conv.py   # stage 3 of ResNet-20: 64 filters of 64 channels
"""

import time

import lns_larq  # noqa: F401  # isort: skip  (Keras 2 and oneDNN before TensorFlow)
import numpy as np
import tensorflow as tf
from absl import app, flags

FLAGS = flags.FLAGS


def _define_flags():
    # Here, not at import: tests import `measure`, and absl flags are process-wide.
    flags.DEFINE_integer("filters", 64, "Filters of the layer: the mapping's batch.")
    flags.DEFINE_integer("channels", 64, "Input channels of the layer (c).")
    flags.DEFINE_integer("hidden", 128, "Hidden channels of the mapping (2c at the paper's width).")
    flags.DEFINE_integer("rounds", 30, "Timed rounds, after one untimed.")


def _selection():
    """S[out position, in position, tap] of a 3x3 "same" conv on a 3x3 image."""
    s = np.zeros((9, 9, 9), "float32")
    for oy in range(3):
        for ox in range(3):
            for ty in range(3):
                for tx in range(3):
                    iy, ix = oy + ty - 1, ox + tx - 1
                    if 0 <= iy < 3 and 0 <= ix < 3:
                        s[oy * 3 + ox, iy * 3 + ix, ty * 3 + tx] = 1
    return s


SELECTION = _selection()


def conv(x, kernel):
    return tf.nn.conv2d(x, kernel, 1, "SAME")


def dense(x, kernel):
    c_in, c_out = kernel.shape[2], kernel.shape[3]
    blocks = tf.einsum("pqt,tio->qipo", SELECTION, tf.reshape(kernel, (9, c_in, c_out)))
    y = tf.reshape(x, (-1, 9 * c_in)) @ tf.reshape(blocks, (9 * c_in, 9 * c_out))
    return tf.reshape(y, (-1, 3, 3, c_out))


# Per output position, its valid (input position, tap) pairs; positions grouped by
# how many they have (corners 4, edges 6, centre 9).
_VALID = [[(int(np.argmax(SELECTION[p, :, t])), t) for t in range(9) if SELECTION[p, :, t].any()]
          for p in range(9)]
_GROUPS = {}
for _p, _pairs in enumerate(_VALID):
    _GROUPS.setdefault(len(_pairs), []).append(_p)
_ORDER = np.argsort([p for n in sorted(_GROUPS) for p in _GROUPS[n]])


def taps(x, kernel):
    c_in, c_out = kernel.shape[2], kernel.shape[3]
    flat, kernels = tf.reshape(x, (-1, 9, c_in)), tf.reshape(kernel, (9, c_in, c_out))
    outputs = []
    for n in sorted(_GROUPS):
        positions = _GROUPS[n]
        inputs = np.array([[q for q, _ in _VALID[p]] for p in positions]).reshape(-1)
        kernel_taps = np.array([[t for _, t in _VALID[p]] for p in positions]).reshape(-1)
        gathered = tf.reshape(tf.gather(flat, inputs, axis=1), (-1, len(positions), n * c_in))
        weights = tf.reshape(tf.gather(kernels, kernel_taps), (len(positions), n * c_in, c_out))
        outputs.append(tf.matmul(tf.transpose(gathered, (1, 0, 2)), weights))
    y = tf.gather(tf.concat(outputs, 0), _ORDER)
    return tf.reshape(tf.transpose(y, (1, 0, 2)), (-1, 3, 3, c_out))


FORMULATIONS = {"conv": conv, "dense": dense, "taps": taps}


def mapping_step(formulation, x, kernels):
    """A `tf.function`: the loss and its gradients through three convs of `formulation`."""
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            h = x
            for i, kernel in enumerate(kernels):
                h = formulation(h, kernel)
                if i < len(kernels) - 1:
                    h = tf.nn.relu(h)
            loss = tf.reduce_sum(tf.square(h))
        return tape.gradient(loss, [x, *kernels])
    return step


def measure(filters, channels, hidden, rounds):
    """Per formulation: the median step in seconds, its multiply-adds per channel
    pair and filter, and its gradients' largest difference to the conv's, relative."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(filters, 3, 3, channels)).astype("float32"))
    shapes = [(channels, hidden), (hidden, hidden), (hidden, channels)]
    kernels = [tf.Variable(0.05 * rng.normal(size=(3, 3, a, b)).astype("float32")) for a, b in shapes]
    steps = {name: mapping_step(f, x, kernels) for name, f in FORMULATIONS.items()}
    grads = {name: step() for name, step in steps.items()}  # traced, and checked below
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    difference = {name: max(float(tf.reduce_max(tf.abs(g - r)) / tf.reduce_max(tf.abs(r)))
                            for g, r in zip(grads[name], grads["conv"])) for name in steps}
    return {name: dict(median_s=float(np.median(times[name])), macs=49 if name == "taps" else 81,
                       gradient_difference=difference[name]) for name in steps}


def main(argv):
    from lns_larq import cpu

    del argv
    print(f"CPU: {cpu.describe()}; {FLAGS.filters} filters of {FLAGS.channels} channels, hidden {FLAGS.hidden}; "
          f"forward and backward of 3 convs; median of {FLAGS.rounds} interleaved rounds")
    for name, r in measure(FLAGS.filters, FLAGS.channels, FLAGS.hidden, FLAGS.rounds).items():
        print(f"{name:6s} {r['macs']:3d} multiply-adds/pair  {1000 * r['median_s']:8.2f} ms  "
              f"gradients vs conv {r['gradient_difference']:.1e}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
