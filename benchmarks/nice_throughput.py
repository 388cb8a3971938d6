"""NICE training speed against this machine's matrix-product limit, float32 and bfloat16.

Measures, in one run:
  - NICE's training step rate (`Model.fit` on in-memory batches of 128) in FLOP/s, counting
    2*in*out multiply-adds per Dense layer and sample, times 3 for forward plus backward;
  - the float32 rate of a (128 x 1000) . (1000 x 1000) matrix product in TensorFlow;
  - the same NICE step with `--precision bfloat16` (mixed precision).
Each rate is the best of several repeats, as the machine is shared. With --train-epochs N it
also trains both precisions for N epochs on the full data (nice.py at the blog's settings) and
prints their best validation losses; --out-dir keeps those runs. Ends with one line:
    step_gflops=... matmul_gflops=... ratio=... bf16_speedup=...
where ratio = float32 step rate / float32 matmul rate.
Usage: python benchmarks/nice_throughput.py [--steps 60] [--train-epochs 0] [--out-dir DIR]
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import nice  # noqa: E402
from common import run  # noqa: E402


def train_flops_per_sample(model):
    dense = [l for l in model._flatten_layers() if isinstance(l, keras.layers.Dense)]
    forward = sum(2 * l.kernel.shape[0] * l.kernel.shape[1] for l in dense)
    return 3 * forward


def step_seconds(precision, steps, batch=128):
    cfg = nice.Config(precision=precision)
    keras.utils.set_random_seed(0)
    encoder, _ = nice.build_models(cfg)
    x = np.random.default_rng(0).random((batch * steps, 784), dtype=np.float32)
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    encoder.fit(x, x, batch_size=batch, epochs=6, verbose=0, shuffle=True, callbacks=[Timer()])
    # the first epoch includes tracing
    return min(times[1:]) / steps, train_flops_per_sample(encoder) * batch


def step_parts(cfg, repeats=20, batch=128):
    """Best seconds of the gradient computation alone and of the optimizer's update alone.

    Their sum against the whole step shows where a step's time goes beyond the matrix products.
    """
    keras.utils.set_random_seed(0)
    encoder, _ = nice.build_models(cfg)
    x = tf.constant(np.random.default_rng(0).random((batch, nice.ORIGINAL_DIM), dtype=np.float32))
    weights = encoder.trainable_variables
    encoder.optimizer.build(weights)

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            loss = keras.ops.mean(nice.gaussian_loss(x, encoder(x, training=True)))
            loss += keras.ops.sum(encoder.losses)
        return tape.gradient(loss, weights)

    grads = gradients()
    update = tf.function(lambda: encoder.optimizer.apply(grads, weights))

    def best(fn, sync):
        fn(), fn()  # trace and warm up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
        return min(times)

    return (best(gradients, lambda: None),  # tensors returned eagerly are computed
            best(update, lambda: encoder.optimizer.iterations.numpy()))


def matmul_seconds(reps=200):
    a = tf.random.normal((128, 1000))
    b = tf.Variable(tf.random.normal((1000, 1000)))

    @tf.function
    def loop():
        acc = tf.zeros((128, 1000))
        for _ in tf.range(reps):
            acc += tf.matmul(a + acc * 1e-9, b)
        return acc

    loop()  # trace
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        loop().numpy()
        best = min(best, (time.perf_counter() - t) / reps)
    return best, 2 * 128 * 1000 * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="training steps per timed epoch")
    parser.add_argument("--train-epochs", type=int, default=0,
                        help="also train both precisions this many epochs and compare losses")
    parser.add_argument("--out-dir", default="",
                        help="with --train-epochs: keep the runs in DIR/float32 and DIR/bfloat16 "
                             "(default: a temporary folder)")
    args = parser.parse_args()
    if args.steps < 1 or args.train_epochs < 0:
        parser.error("--steps must be >= 1 and --train-epochs >= 0")
    print(f"machine: {run.machine()}", flush=True)
    mm_s, mm_flops = matmul_seconds()
    f32_s, step_flops = step_seconds("float32", args.steps)
    bf16_s, _ = step_seconds("bfloat16", args.steps)
    mm_s2, _ = matmul_seconds()  # again, to bracket drift of a shared machine
    mm_gflops = mm_flops / min(mm_s, mm_s2) / 1e9
    step_gflops = step_flops / f32_s / 1e9
    print(f"float32 step: {f32_s * 1e3:.1f} ms ({step_flops / 1e9:.2f} GFLOP), "
          f"bfloat16 step: {bf16_s * 1e3:.1f} ms, matmul: {mm_gflops:.1f} GFLOP/s")
    grad_s, update_s = step_parts(nice.Config())
    print(f"float32 parts: gradients {grad_s * 1e3:.1f} ms "
          f"({step_flops / grad_s / 1e9 / mm_gflops:.2f} of the matmul rate), optimizer update "
          f"{update_s * 1e3:.1f} ms; the update alone caps the ratio at "
          f"{(step_flops / mm_gflops / 1e9) / (step_flops / mm_gflops / 1e9 + update_s):.2f}")
    if args.train_epochs:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(args.out_dir or tmp)
            runs = {p: nice.main(["--epochs", str(args.train_epochs), "--precision", p,
                                  "--out-dir", str(root / p)]) for p in ("float32", "bfloat16")}
        for precision, m in runs.items():
            print(f"{precision}: best_val_loss={m['best_val_loss']:.2f} (epoch {m['best_epoch']} of "
                  f"{args.train_epochs}), {m['seconds_per_epoch']:.1f} s/epoch")
    print(f"step_gflops={step_gflops:.1f} matmul_gflops={mm_gflops:.1f} "
          f"ratio={step_gflops / mm_gflops:.2f} bf16_speedup={f32_s / bf16_s:.2f}")


if __name__ == "__main__":
    main()
