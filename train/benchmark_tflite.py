"""Batch-1 latency of an LCE `.tflite`, next to the float32 model of the same architecture.

    python train/benchmark_tflite.py model.tflite --threads 1 2
    python train/benchmark_tflite.py model.tflite --float model_float32.tflite
    python train/benchmark_tflite.py model.tflite --model_path runs/<run>/model.keras

The float32 model is, in order: --float; else the `<model>_float32.tflite` that
`train/export.py` writes next to its output; else built from --model_path
(`lns_larq.export.float_copy`: quantizers removed, converted with the same
converter). Both run in LCE's interpreter with its fast paths (indirect BGEMM for
binary convs, XNNPack for float ops); latency is the median and 90th percentile
of --runs single-image inferences after --warmup, the two models alternating.

LCE's optimised binary kernels are written for ARM (aarch64, armv7). On x86 the
binary convs run LCE's portable C++ kernels, so x86 numbers say little about the
speed-up on a phone or a Raspberry Pi; run the same script (or LCE's
`lce_benchmark_model` binary) on the ARM board for that.
"""

import argparse
import os
import platform
import time

from cli import fail


def latencies_ms(flatbuffers, threads, warmup, runs):
    """`[(median, p90)]` in ms of single-image inference of each flatbuffer.

    The models run in turn, one inference each, so that a change in the machine's
    load during the measurement affects them alike.
    """
    import numpy as np

    from lns_larq.export import interpreter

    calls = []
    for flatbuffer in flatbuffers:
        runner = interpreter(flatbuffer, num_threads=threads)
        shape = [1, *runner.input_shapes[0][1:]]
        x = [np.random.RandomState(0).standard_normal(shape).astype(np.float32)]
        predict = runner.interpreter.predict  # the C++ call, without per-batch Python work
        calls.append((runner, predict, x))
    for _, predict, x in calls:
        for _ in range(warmup):
            predict(x)
    times = np.zeros((len(calls), runs))
    for i in range(runs):
        for j, (_, predict, x) in enumerate(calls):
            start = time.perf_counter()
            predict(x)
            times[j, i] = 1000 * (time.perf_counter() - start)
    return [(float(np.median(t)), float(np.percentile(t, 90))) for t in times]


def float_flatbuffer(args):
    """The float32 `.tflite` bytes and where they came from, or (None, reason)."""
    sibling = os.path.splitext(args.tflite)[0] + "_float32.tflite"
    path = args.float or (sibling if os.path.isfile(sibling) else None)
    if path:
        if not os.path.isfile(path):
            fail(f"--float {path}: no such file")
        with open(path, "rb") as f:
            return f.read(), path
    if args.model_path:
        import larq_compute_engine as lce

        from lns_larq import export

        try:
            model = export.load_model(args.model_path)
        except ValueError as e:
            fail(f"--model_path {e}")
        return lce.convert_keras_model(export.float_copy(model)), f"float_copy({args.model_path})"
    return None, "no float32 model: pass --float or --model_path, or export with train/export.py"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tflite", help="LCE .tflite written by train/export.py")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts")
    parser.add_argument("--float", help="float32 .tflite of the same architecture")
    parser.add_argument("--model_path", help="Keras model to build the float32 model from")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs first")
    parser.add_argument("--runs", type=int, default=200, help="timed runs")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.tflite):
        fail(f"{args.tflite}: no such file")
    if args.runs < 1 or args.warmup < 0 or min(args.threads) < 1:
        fail("--runs and --threads must be >= 1, --warmup >= 0")

    import lns_larq  # noqa: F401  (selects Keras 2 before TensorFlow loads)
    from lns_larq.export import op_counts

    with open(args.tflite, "rb") as f:
        binary = f.read()
    reference, source = float_flatbuffer(args)
    models = [("binary (LCE)", binary, args.tflite)]
    if reference is not None:
        models.append(("float32", reference, source))
    else:
        print(f"note: {source}")

    load = ", load average {:.1f}".format(os.getloadavg()[0]) if hasattr(os, "getloadavg") else ""
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs{load}; batch 1, "
          f"{args.warmup} warm-up + {args.runs} timed runs, models alternating")
    if platform.machine() not in ("aarch64", "arm64", "armv7l"):
        print("note: LCE's optimised binary kernels are for ARM; on this machine binary "
              "convs use its portable kernels.")
    print(f"{'model':<14}{'threads':>8}{'median ms':>11}{'p90 ms':>9}{'size KiB':>10}  "
          f"{'LceBconv2d':>10}  file")
    for threads in args.threads:
        results = latencies_ms([fb for _, fb, _ in models], threads, args.warmup, args.runs)
        for (name, flatbuffer, source), (median, p90) in zip(models, results):
            bconvs = op_counts(flatbuffer).get("LceBconv2d", 0)
            print(f"{name:<14}{threads:>8}{median:>11.3f}{p90:>9.3f}"
                  f"{len(flatbuffer) / 1024:>10.1f}  {bconvs:>10}  {source}")


if __name__ == "__main__":
    main()
