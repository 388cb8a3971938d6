"""Each script's training step, and the Gumbel-Softmax NLL's decoding, against this machine's
float32 matrix-product rate, on one Keras backend (`--backend`, TensorFlow by default).

Measures, in one run, on that backend (every compiled function below is compiled the backend's
way: `tf.function` on TensorFlow, `jax.jit` on JAX; PyTorch runs them eagerly, as Keras' PyTorch
trainer runs its step):
  - for each script at its default settings (its own `build_models`, compile settings and input
    pipeline, on the first --images training images): the seconds per training step, the best
    of six epochs after the first, each epoch followed by a timing of the rate of a float32
    (2048 x 2048) . (2048 x 2048) matrix product and of the step's parts (below), so that a
    slow spell of the shared machine slows them alike; the fractions are against the best
    matrix-product rate of those rounds;
  - the floating-point work of a step, counted from the layer shapes: a Dense layer does
    2 * in * out FLOPs per image, a convolution 2 * (output pixels) * k * k * C_in * C_out, a
    transposed convolution 2 * (input pixels) * k * k * C_in * C_out. Training is forward plus
    backward, and the backward pass does twice the forward work (the gradient of the weights and
    of the layer's input), except for a layer reading the model's input, which needs only the
    first: forward x 3, such a layer x 2. Elementwise work (activations, the loss, the sampler, the
    optimizer) is not counted: it is small beside the products, and the breakdown shows its time;
  - where the time goes: the gradients alone (forward and backward in one compiled function),
    the optimizer's update alone, and the rest of the step (the input pipeline, Keras' loss and
    metric bookkeeping, the calls between), with the time the counted FLOPs would take at the
    matrix-product rate; and the gradients and the update in one compiled function, the step's
    arithmetic without Keras' bookkeeping, whose difference from the step is that bookkeeping;
    the same on a batch of one image, where the arithmetic is a hundredth and what is left is
    the cost of the calls and of each operation's dispatch (large where PyTorch runs eagerly);
    and, for the models of Dense layers only, the step's matrix products alone (forward, and
    the backward products) in one compiled function at its shapes: about the most the
    machine's matrix-product kernels allow at those shapes;
  - on PyTorch, for each script, the step (an epoch by `fit`) and the gradients alone with the
    layers called directly, as the scripts run (common/direct_calls.py), and through Keras'
    `Layer.__call__` (Keras' own way), alternating;
  - on PyTorch, for the MLP VAE, its step written in plain PyTorch, without Keras (the same
    layers, loss and RMSprop; `plain_torch_times`), against the script's step through Keras,
    alternating; with `--torch-compile` also with its loss and update compiled by torch.compile:
    the floor PyTorch's own ops and compiler set at these shapes, whatever Keras adds; and the
    same part by part (`plain_torch_parts`): the forward pass and loss, the gradients, the
    update, each both ways, alternating;
  - on PyTorch, for the two MLP VAEs, the step with torch's default intra-op threads and with
    one, alternating epochs (`torch_thread_times`);
  - for the Gumbel-Softmax model, the gradients alone again with Keras' own Conv2D and
    Conv2DTranspose in place of the script's (common/kernels.py; they differ on JAX and
    PyTorch), alternating; and
    each convolution alone at the training batch, its forward pass and its gradients (of its
    input and its weights), each also as Keras' own layer;
  - the Gumbel-Softmax NLL's decoding: one-hot codes through the decoder as the script scores
    its importance samples (one compiled call per batch of `NLL_DECODE_BATCH` codes), in three
    rounds alternating with the matrix product and with the same decoder built from Keras' own
    convolution layers; then,
    for comparison, in batches of 100, 200, 500, 1000 and 2000, by `predict` (the script's way
    before) and by one compiled call per batch; and each of the decoder's layers alone, at
    batches of 1000 (where a call's fixed cost is small beside its work), and their sum.
  - with `--torch-compile` (and `--backend torch`): each script's model with Keras'
    `jit_compile=True`, which on PyTorch wraps the step in torch.compile (TorchInductor),
    against the same model eager, one epoch of each in turn for three rounds: the compiled
    model's first epoch (tracing and compiling), the best seconds per step of each, the graphs
    compiled and torch.compile's graph breaks with the most frequent reason; then the same with
    Keras' random draws replaced by torch's global generator (`torch_global_draws`), to show what
    Keras' own draws, which torch.compile cannot trace, cost it; and for the two MLP VAEs, the
    gradients with the forward pass and loss compiled whole, against eager, with what that takes
    (`torch_forward_compile_times`). Compiling errors are printed, not raised.
Each rate is also given as a fraction of the matrix-product rate. Ends with one line:
    vae=... vmf=... gs_train=... gs_nll=... nice=...
the fractions, and the backend's matrix-product rate beside it.
Usage: python benchmarks/roofline.py [--backend tensorflow|jax|torch] [--images 60000]
                                     [--scripts vae vmf gs nice] [--torch-compile]
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
BACKENDS = ("tensorflow", "jax", "torch")
if __name__ == "__main__":  # the backend must be set before Keras is imported
    _pre = argparse.ArgumentParser(add_help=False)
    _pre.add_argument("--backend", choices=BACKENDS, default="tensorflow")
    os.environ["KERAS_BACKEND"] = _pre.parse_known_args()[0].backend
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from common import startup  # noqa: E402,F401
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import importlib  # noqa: E402

from common import catalog, data, direct_calls, evaluation, kernels, run  # noqa: E402

BACKEND = keras.backend.backend()

SCRIPTS = {s.short: importlib.import_module(s.name) for s in catalog.SCRIPTS}
MLP_VAES = ("vae", "vmf")  # the scripts of Dense layers only


def best_seconds(fn, repeats):
    fn()  # trace and warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


MATMUL_N = 2048


def compiled(fn):
    """`fn` compiled as this backend compiles a step (tf.function, jax.jit); on PyTorch, `fn`
    itself, run without recording gradients. Its arrays are passed as arguments, never captured:
    a compiler may fold a computation on captured constants away."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, autograph=False)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    import torch

    def eager(*args):
        with torch.no_grad():
            return fn(*args)
    return eager


def ready(x):
    """Wait for `x` (an array or a list of them) to be computed: fetch one element of it."""
    first = x[0] if isinstance(x, (list, tuple)) else x
    return float(ops.convert_to_numpy(ops.reshape(first, (-1,))[:1])[0])


def tensor(shape, seed=0):
    return ops.convert_to_tensor(np.random.default_rng(seed).standard_normal(shape, "float32"))


def matmul():
    """A compiled float32 (MATMUL_N x MATMUL_N) . (MATMUL_N x MATMUL_N) product; it does
    2 MATMUL_N^3 FLOPs."""
    a, b = tensor((MATMUL_N, MATMUL_N)), tensor((MATMUL_N, MATMUL_N), 1)
    product = compiled(lambda a, b: ops.matmul(a, b)[:1, :1])
    return lambda: ready(product(a, b))


def matmul_rate(seconds):
    return 2 * MATMUL_N**3 / seconds


CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.Conv2DTranspose)


def layer_flops(layer, first):
    """Forward FLOPs per image of a Dense or (transposed) convolution layer, and its training
    FLOPs (x 3, or x 2 for a layer fed by the data)."""
    if isinstance(layer, keras.layers.Dense):
        fin, fout = layer.kernel.shape
        forward = 2 * fin * fout
    elif isinstance(layer, CONVOLUTIONS):
        k = np.prod(layer.kernel_size)
        c_in = layer.input.shape[-1]
        pixels = (np.prod(layer.input.shape[1:3]) if isinstance(layer, keras.layers.Conv2DTranspose)
                  else np.prod(layer.output.shape[1:3]))
        forward = 2 * pixels * k * c_in * layer.filters
    else:
        return 0, 0
    return forward, forward * (2 if first else 3)


def counted_layers(model):
    """(layer, first) for every layer of `model`, first when it reads the model's input."""
    data = {id(t) for t in model.inputs}
    for layer in model._flatten_layers(include_self=False):
        try:
            first = id(layer.input) in data  # the layer reads the model's input directly
        except (AttributeError, ValueError):  # a sublayer, or one called more than once
            first = False
        yield layer, first


def model_flops(model):
    """(forward, training) FLOPs per image of every Dense and convolution layer in `model`."""
    forward = training = 0
    for layer, first in counted_layers(model):
        f, t = layer_flops(layer, first)
        forward, training = forward + f, training + t
    return forward, training


def dense_products(model, batch):
    """A training step's Dense products alone, all in one compiled function, at the step's
    shapes: per layer x.W, and for the backward pass x^T.dy (the weights' gradient) and,
    unless the layer reads the data, dy.W^T (its input's); None where the model has a
    convolution. Their FLOPs are the step's counted FLOPs, so this is about as fast as the
    counted work goes with this machine's matrix-product kernels at these shapes."""
    operands, firsts = [], []
    for layer, first in counted_layers(model):
        if isinstance(layer, CONVOLUTIONS):
            return None
        if isinstance(layer, keras.layers.Dense):
            fin, fout = layer.kernel.shape
            shapes = ((batch, fin), (fin, fout), (batch, fout))
            operands.append([tensor(shape, i) for i, shape in enumerate(shapes)])
            firsts.append(first)

    def products(operands):
        corners = []
        for (x, w, dy), first in zip(operands, firsts):
            corners += [ops.matmul(x, w)[0, 0], ops.matmul(ops.transpose(x), dy)[0, 0]]
            if not first:
                corners.append(ops.matmul(dy, ops.transpose(w))[0, 0])
        return ops.sum(ops.stack(corners))

    products = compiled(products)
    return lambda: ready(products(operands))


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.t)


def training_inputs(name, x):
    if name == "gs":
        return x[..., None], None
    x = x.reshape(len(x), -1)
    return x, (x if name == "nice" else None)


def training_loss(model, xb, yb=None):
    """The model's loss on one batch as Keras' trainers compute it: the forward pass in
    training mode, then `compute_loss` (the losses the layers add included)."""
    return model.compute_loss(x=xb, y=yb, y_pred=model(xb, training=True), training=True)


def step_parts(model, x, y, batch_size):
    """Compiled, warmed-up callables, each one batch's work: the gradients alone, the
    optimizer's update alone, and both in one function (Keras' step without its bookkeeping),
    each the way Keras' trainer for this backend computes them."""
    return {"tensorflow": tf_step_parts, "jax": jax_step_parts,
            "torch": torch_step_parts}[BACKEND](model, x[:batch_size],
                                                None if y is None else y[:batch_size])


def tf_step_parts(model, x, y):
    import tensorflow as tf

    xb, yb = tf.constant(x), None if y is None else tf.constant(y)
    weights = model.trainable_variables

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            loss = training_loss(model, xb, yb)
        return tape.gradient(loss, weights)

    @tf.function
    def whole_step():
        model.optimizer.apply(gradients(), weights)
        return model.optimizer.iterations

    grads = gradients()
    update = tf.function(lambda: model.optimizer.apply(grads, weights), autograph=False)
    return {"gradients": lambda: [g.numpy() for g in gradients()[:1]],
            "update": lambda: (update(), model.optimizer.iterations.numpy()),
            "both": lambda: whole_step().numpy()}


def jax_step_parts(model, x, y):
    """As Keras' JAX trainer: `jax.value_and_grad` of `compute_loss_and_updates` on the
    variables' values, and the optimizer's `stateless_apply`, each under `jax.jit`."""
    import jax

    # copies: the timed fits between the rounds donate the variables' buffers
    values = lambda vs: [jax.numpy.array(v.value, copy=True) for v in vs]  # noqa: E731
    trainable = values(model.trainable_variables)
    non_trainable = values(model.non_trainable_variables)
    metrics, optimizer = values(model.metrics_variables), values(model.optimizer.variables)
    xb, yb = ops.convert_to_tensor(x), None if y is None else ops.convert_to_tensor(y)

    def gradients(trainable, non_trainable, metrics, xb, yb):
        grad_fn = jax.value_and_grad(model.compute_loss_and_updates, has_aux=True)
        _, grads = grad_fn(trainable, non_trainable, metrics, xb, yb, None, training=True,
                           optimizer_variables=optimizer)
        return grads

    def both(optimizer, trainable, non_trainable, metrics, xb, yb):
        grads = gradients(trainable, non_trainable, metrics, xb, yb)
        return model.optimizer.stateless_apply(optimizer, grads, trainable)

    gradients_c, both_c = jax.jit(gradients), jax.jit(both)
    update_c = jax.jit(model.optimizer.stateless_apply)
    grads = gradients_c(trainable, non_trainable, metrics, xb, yb)
    return {"gradients": lambda: ready(gradients_c(trainable, non_trainable, metrics, xb, yb)),
            "update": lambda: ready(update_c(optimizer, grads, trainable)[0]),
            "both": lambda: ready(both_c(optimizer, trainable, non_trainable, metrics, xb,
                                         yb)[0])}


def torch_step_parts(model, x, y):
    """As Keras' PyTorch trainer: eager forward and `backward()`, then the optimizer's `apply`
    without recording gradients."""
    import torch

    xb, yb = ops.convert_to_tensor(x), None if y is None else ops.convert_to_tensor(y)
    weights = model.trainable_variables

    def gradients():
        model.zero_grad()
        loss = training_loss(model, xb, yb)
        loss.backward()
        return [v.value.grad for v in weights]

    def update(grads):
        with torch.no_grad():
            model.optimizer.apply(grads, weights)
        return weights[0].value

    grads = [g.clone() for g in gradients()]
    return {"gradients": lambda: ready(gradients()),
            "update": lambda: ready(update(grads)),
            "both": lambda: ready(update(gradients()))}


def tau_schedule(name, model):
    """The Gumbel-Softmax script's τ callback for a first fit (none for the other scripts)."""
    return [SCRIPTS["gs"].TauAnnealing(model.get_layer("z"))] if name == "gs" else []


def step_times(name, model, x, y, batch_size, rounds=6, repeats=5):
    """Best seconds of a training step and of its parts, as a dict: "step" (an epoch by `fit`
    at the script's settings, per step), "matmul" (the reference product), "gradients",
    "update", "both" (step_parts), "one image" ("both" on a batch of one image: the arithmetic
    a hundredth, the calls and the dispatch of each operation as many) and, for a model of
    Dense layers only, "products" (dense_products). In `rounds` rounds, each timing one epoch
    and then each part (best of `repeats`), so that a slow spell of a shared machine slows them
    alike; each is the best over the rounds. The first epoch, which traces, is not timed."""
    batches, order = run.epoch_batches(x, y, batch_size, seed=0)
    timer = EpochTimer()
    callbacks = [order, timer]
    # the tau schedule is traced into the step by the first fit; its callback retraces the step
    # whenever a fit begins, so the timed fits go without it
    model.fit(batches, epochs=1, verbose=0, callbacks=tau_schedule(name, model) + callbacks)
    parts = {"matmul": matmul(), **step_parts(model, x, y, batch_size),
             "one image": step_parts(model, x, y, 1)["both"]}
    products = dense_products(model, batch_size)
    if products is not None:
        parts["products"] = products
    times = {key: [] for key in ["step", *parts]}
    for _ in range(rounds):
        model.fit(batches, epochs=1, verbose=0, callbacks=callbacks)
        times["step"].append(timer.times[-1] / (len(x) // batch_size))
        for key, part in parts.items():
            times[key].append(best_seconds(part, repeats))
    return {key: min(values) for key, values in times.items()}


def torch_global_draws():
    """Keras' PyTorch random draws (normal, uniform, randint) replaced by torch's global
    generator: a different stream of noise, but one torch.compile can trace, where Keras' own
    draws seed a `torch.Generator` in a function torch.compile must skip. Returns the undo."""
    import torch
    from keras.src.backend.torch import random as torch_random
    from keras.src.backend.torch.core import to_torch_dtype

    def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        return torch.randn(tuple(shape), dtype=to_torch_dtype(dtype or "float32")) * stddev + mean

    def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        u = torch.rand(tuple(shape), dtype=to_torch_dtype(dtype or "float32"))
        return u * (maxval - minval) + minval

    def randint(shape, minval, maxval, dtype="int32", seed=None):
        return torch.randint(minval, maxval, tuple(shape), dtype=to_torch_dtype(dtype))

    saved = {k: getattr(torch_random, k) for k in ("normal", "uniform", "randint")}
    torch_random.normal, torch_random.uniform, torch_random.randint = normal, uniform, randint
    return lambda: [setattr(torch_random, k, f) for k, f in saved.items()]


def compile_error(e):
    """One line for what compiling raised: its type and, where it wraps another (Inductor's
    BackendCompilerFailed does), the innermost one's type and first line."""
    root = e
    while root.__cause__ is not None or getattr(root, "inner_exception", None) is not None:
        root = root.__cause__ or root.inner_exception
    first = next((line for line in str(root).splitlines() if line.strip()), "")[:200]
    return f"{type(e).__name__}" + (f" from {type(root).__name__}" if root is not e else "") + (
        f": {first.strip()}" if first else "")


def torch_compile_times(name, module, cfg, x, y, rounds=3, global_draws=False):
    """PyTorch only: the script's model with Keras' `jit_compile=True` (torch.compile of its step,
    TorchInductor) against the same model eager, one epoch of each in turn per round; with
    `global_draws`, both with `torch_global_draws` in place of Keras' random draws. Returns
    {"first": seconds of the compiled model's first epoch (tracing and compiling included),
    "compiled"/"eager": best seconds per step over the later epochs, "graphs": graphs compiled,
    "breaks": {reason: count} of torch.compile's graph breaks}; or {"error": what compiling
    raised, as `compile_error` names it}."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    undo = torch_global_draws() if global_draws else (lambda: None)
    batches, order = run.epoch_batches(x, y, cfg.batch_size, seed=0)
    steps = len(x) // cfg.batch_size
    models, timer = {}, EpochTimer()
    for how in ("eager", "compiled"):
        run.set_random_seed(0)
        models[how] = module.build_models(cfg)[0]
    models["compiled"].compile(optimizer=models["compiled"].optimizer,
                               loss=models["compiled"].loss, jit_compile=True)
    per_step = {how: [] for how in models}
    try:
        for r in range(rounds + 1):
            for how, model in models.items():
                tau = tau_schedule(name, model) if r == 0 else []
                model.fit(batches, epochs=1, verbose=0, callbacks=tau + [order, timer])
                if r > 0:
                    per_step[how].append(timer.times[-1] / steps)
                elif how == "compiled":
                    first = timer.times[-1]
    except Exception as e:  # what torch.compile raised, to report, not to hide
        return {"error": compile_error(e)}
    finally:
        undo()
    return {"first": first, **{how: min(v) for how, v in per_step.items()},
            "graphs": counters["stats"]["unique_graphs"], "breaks": dict(counters["graph_break"])}


def torch_forward_compile_times(model, cfg, x, rounds=3, repeats=20):
    """PyTorch: best seconds of the gradients (forward pass, loss, `backward()`; the Keras
    part of `torch_step_parts`) eager, against the same with the forward pass and loss compiled
    whole by torch.compile (`fullgraph=True`), alternating. What that needs, none of which the
    scripts do: Keras' random draws from torch's global generator (`torch_global_draws`), Keras'
    binary cross-entropy's MPS query answered by a constant (a bool torch.compile cannot trace)
    and the layers' `add_loss` lists cleared outside the compiled call (torch.compile guards on
    their items, so every step would recompile). The most compiling the forward could save.
    The compiled code draws with torch's own random kernels (Inductor's `fallback_random`), so
    that from one seed both ways draw the same noise.
    As {"eager": s, "compiled": s, "difference": the relative difference of the two losses from
    the same draws} or {"error": what compiling raised}."""
    import torch
    import torch._dynamo
    import torch._inductor.config

    xb = ops.convert_to_tensor(x[:cfg.batch_size].astype("float32"))

    def forward_loss(xb):
        return training_loss(model, xb)

    def gradients(loss_fn):
        model.zero_grad()
        model._clear_losses()
        loss = loss_fn(xb)
        model._clear_losses()
        loss.backward()
        return loss

    torch._dynamo.reset()
    undo = torch_global_draws()
    fallback_random = torch._inductor.config.fallback_random
    mps_available, torch.backends.mps.is_available = (
        torch.backends.mps.is_available, lambda answer=torch.backends.mps.is_available(): answer)
    try:
        compiled = torch.compile(forward_loss, fullgraph=True)
        losses = []
        # torch's own random kernels in the compiled code too, so both draw the same noise
        torch._inductor.config.fallback_random = True
        for loss_fn in (forward_loss, compiled):  # the second call traces and compiles
            torch.manual_seed(0)
            losses.append(gradients(loss_fn).item())
        times = alternating({"eager": lambda: ready(gradients(forward_loss)),
                             "compiled": lambda: ready(gradients(compiled))}, rounds, repeats)
        return {**times, "difference": abs(losses[1] - losses[0]) / abs(losses[0])}
    except Exception as e:  # what torch.compile raised, to report, not to hide
        return {"error": compile_error(e)}
    finally:
        torch._inductor.config.fallback_random = fallback_random
        torch.backends.mps.is_available = mps_available
        undo()


def torch_thread_times(model, cfg, x, rounds=3):
    """PyTorch: best seconds per step of an epoch by `fit` with torch's default intra-op
    threads and with one, alternating; as {threads: s}."""
    import torch

    batches, order = run.epoch_batches(x, None, cfg.batch_size, seed=0)
    timer, default = EpochTimer(), torch.get_num_threads()

    def epoch(threads):
        torch.set_num_threads(threads)
        try:
            model.fit(batches, epochs=1, verbose=0, callbacks=[order, timer])
        finally:
            torch.set_num_threads(default)
        return timer.times[-1] / (len(x) // cfg.batch_size)

    times = {threads: [] for threads in dict.fromkeys((default, 1))}
    for _ in range(rounds):
        for threads in times:
            times[threads].append(epoch(threads))
    return {threads: min(v) for threads, v in times.items()}


def torch_compile_line(t, what=""):
    head = f"with torch.compile (Keras' jit_compile=True{what})"
    if "error" in t:
        return f"{head}: compiling failed: {t['error']}"
    reasons = sorted(t["breaks"].items(), key=lambda kv: -kv[1])
    first = reasons[0][0].splitlines()[0][:120] if reasons else ""
    return (f"{head}: first epoch {t['first']:.1f} s "
            f"(tracing and compiling), then {t['compiled'] * 1e3:.2f} ms a step against "
            f"{t['eager'] * 1e3:.2f} eager (alternating epochs): "
            f"{t['eager'] / t['compiled']:.2f}x; "
            f"{t['graphs']} graphs compiled, {sum(t['breaks'].values())} graph breaks"
            + (f" ({len(reasons)} reasons; the most frequent: {first})" if reasons else ""))


def alternating(parts, rounds, repeats):
    """{name: best seconds} of each callable in `parts`, timed in turn (best of `repeats`) in
    each of `rounds` rounds, so that a slow spell of a shared machine slows them alike."""
    times = {k: [] for k in parts}
    for _ in range(rounds):
        for k, part in parts.items():
            times[k].append(best_seconds(part, repeats))
    return {k: min(v) for k, v in times.items()}


def stock_convolutions_models(module, cfg):
    """The Gumbel-Softmax models (vae, encoder, decoder) with Keras' own Conv2D and
    Conv2DTranspose in place of common/kernels.py's (they differ on JAX and PyTorch only)."""
    script_layers = kernels.Conv2D, kernels.Conv2DTranspose
    kernels.Conv2D, kernels.Conv2DTranspose = keras.layers.Conv2D, keras.layers.Conv2DTranspose
    try:
        run.set_random_seed(0)
        return module.build_models(cfg)
    finally:
        kernels.Conv2D, kernels.Conv2DTranspose = script_layers


def conv_gradient_times(module, cfg, model, x, rounds=3, repeats=5):
    """Best seconds of the gradients alone (step_parts) with the script's convolutions and
    with Keras' own, alternating."""
    stock = stock_convolutions_models(module, cfg)[0]
    parts = {"script": step_parts(model, x, None, cfg.batch_size)["gradients"],
             "keras": step_parts(stock, x, None, cfg.batch_size)["gradients"]}
    return alternating(parts, rounds, repeats)


def direct_call_times(name, module, cfg, model, x, y, rounds=3, repeats=5):
    """PyTorch: best seconds of a training step (an epoch by `fit`, per step) and of the
    gradients alone (step_parts), with the layers called directly (the scripts' way,
    common/direct_calls.py) and through Keras' `__call__`, alternating; as {how: {part: s}}."""
    run.set_random_seed(0)
    through_keras = module.build_models(cfg)[0]
    direct_calls.uninstall(through_keras)
    batches, order = run.epoch_batches(x, y, cfg.batch_size, seed=0)
    timer, steps = EpochTimer(), len(x) // cfg.batch_size
    models = {"direct": model, "keras": through_keras}
    through_keras.fit(batches, epochs=1, verbose=0,
                      callbacks=tau_schedule(name, through_keras) + [order])
    gradients = {how: step_parts(m, x, y, cfg.batch_size)["gradients"]
                 for how, m in models.items()}
    times = {how: {"step": [], "gradients": []} for how in models}
    for _ in range(rounds):
        for how, m in models.items():
            m.fit(batches, epochs=1, verbose=0, callbacks=[order, timer])
            times[how]["step"].append(timer.times[-1] / steps)
            times[how]["gradients"].append(best_seconds(gradients[how], repeats))
    return {how: {part: min(v) for part, v in t.items()} for how, t in times.items()}


def plain_vae_weights(model):
    """PyTorch: copies of the MLP VAE's Dense weights, as leaf tensors that record gradients,
    [kernel, bias] per layer: the one on the data, z_mean, z_log_var, decoder_h, x_logits."""
    layers = {("data" if first else layer.name): layer for layer, first in counted_layers(model)}
    return [w.value.detach().clone().requires_grad_()
            for name in ("data", "z_mean", "z_log_var", "decoder_h", evaluation.LOGITS_LAYER)
            for w in (layers[name].kernel, layers[name].bias)]


def plain_vae_loss(weights, x, eps):
    """The MLP VAE's training loss in plain PyTorch, without Keras: the mean over the batch of
    the binary cross-entropy summed over pixels and the Gaussian KL, z = mean + exp(log_var / 2)
    * eps; `weights` as `plain_vae_weights` gives them."""
    import torch
    import torch.nn.functional as F

    w1, b1, wm, bm, wv, bv, w3, b3, w4, b4 = weights
    h = torch.relu(x @ w1 + b1)
    z_mean, z_log_var = h @ wm + bm, h @ wv + bv
    z = z_mean + torch.exp(z_log_var / 2) * eps
    logits = torch.relu(z @ w3 + b3) @ w4 + b4
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    kl = -0.5 * (1 + z_log_var - z_mean**2 - torch.exp(z_log_var)).sum(-1)
    return (reconstruction + kl).mean()


def plain_rmsprop(model, weights):
    """torch.optim's RMSprop (its foreach update) over `weights`, with the settings of the
    model's Keras RMSprop (ε added outside the square root there, inside in Keras)."""
    import torch

    optimizer = model.optimizer
    return torch.optim.RMSprop(weights, lr=float(optimizer.learning_rate), alpha=optimizer.rho,
                               eps=optimizer.epsilon, foreach=True)


def plain_torch_times(model, cfg, x, rounds=3, compile_too=False):
    """PyTorch, the MLP VAE: best seconds per step of its training written in plain PyTorch
    (`plain_vae_loss`, `backward()`, torch.optim's RMSprop with Keras' settings:
    `plain_rmsprop`), against the script's
    step through Keras (an epoch by `fit`, per step), an epoch of each in turn; with
    `compile_too`, also with the loss and the update each compiled by torch.compile (its first
    epoch, which compiles, not timed). What PyTorch's own ops and compiler give at these
    shapes, whatever Keras adds. As {"plain": s, "keras": s[, "compiled": s]}."""
    import torch

    x = x[: len(x) // cfg.batch_size * cfg.batch_size]  # whole batches, for both
    weights = plain_vae_weights(model)
    plain_optimizer = plain_rmsprop(model, weights)
    # the images as `fit` gives them to the model: float32 of the values it is given
    data = torch.from_numpy(x.astype("float32")).to(weights[0].device)
    batches = data.split(cfg.batch_size)

    def epoch(loss_fn, update):
        for xb in batches:
            loss = loss_fn(weights, xb, torch.randn(len(xb), cfg.latent_dim, device=xb.device))
            plain_optimizer.zero_grad()
            loss.backward()
            update()

    ways = {"plain": lambda: epoch(plain_vae_loss, plain_optimizer.step)}
    if compile_too:
        compiled_loss = torch.compile(plain_vae_loss)
        compiled_update = torch.compile(plain_optimizer.step)
        ways["compiled"] = lambda: epoch(compiled_loss, compiled_update)
        ways["compiled"]()  # compiles
    fits, order = run.epoch_batches(x, None, cfg.batch_size, seed=0)
    ways["keras"] = lambda: model.fit(fits, epochs=1, verbose=0, callbacks=[order])
    times = alternating(ways, rounds, 1)
    return {how: seconds / len(batches) for how, seconds in times.items()}


def plain_torch_parts(model, cfg, x, rounds=3, repeats=20):
    """PyTorch, the MLP VAE: best seconds of each part of one batch's step, the script's way
    through Keras (`torch_step_parts`) and in plain PyTorch (`plain_vae_loss`, torch.optim's
    RMSprop), alternating: "forward" (the loss, no gradients recorded), "gradients" (the loss
    and `backward()`) and "update" (the optimizer's). Where, part by part, Keras' Python around
    PyTorch's ops costs what. As {"keras": {part: s}, "plain": {part: s}}."""
    import torch

    x = x[:cfg.batch_size].astype("float32")  # as `fit` gives them to the model
    keras_parts = torch_step_parts(model, x, None)
    xb = ops.convert_to_tensor(x)
    weights = plain_vae_weights(model)
    plain_optimizer = plain_rmsprop(model, weights)
    eps = torch.randn(cfg.batch_size, cfg.latent_dim, device=xb.device)

    def keras_forward():
        with torch.no_grad():
            return training_loss(model, xb)

    def plain_gradients():
        plain_optimizer.zero_grad()
        plain_vae_loss(weights, xb, eps).backward()
        return weights[0].grad

    def plain_forward():
        with torch.no_grad():
            return plain_vae_loss(weights, xb, eps)

    plain_gradients()  # the gradients the timed updates apply
    parts = {("keras", "forward"): keras_forward,
             ("plain", "forward"): plain_forward,
             ("keras", "gradients"): keras_parts["gradients"],
             ("plain", "gradients"): plain_gradients,
             ("keras", "update"): keras_parts["update"],
             ("plain", "update"): lambda: plain_optimizer.step()}
    times = alternating(parts, rounds, repeats)
    return {how: {part: times[how, part] for part in ("forward", "gradients", "update")}
            for how in ("keras", "plain")}


def layer_gradient(layer, x):
    """A callable computing, at input `x`, the gradients of sum(sin(layer(x))) with respect to
    `x` and the layer's weights: the layer's share of a training step's forward and backward
    work, compiled as `compiled` compiles (PyTorch: eagerly, as its trainer runs)."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function
        def tf_grads(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.sin(layer(x)))
            return tape.gradient(loss, [x, *layer.trainable_variables])
        xt = tf.constant(x)
        return lambda: ready(tf_grads(xt))
    if BACKEND == "jax":
        import jax

        def loss(weights, x):
            return jax.numpy.sum(jax.numpy.sin(layer.stateless_call(weights, [], x)[0]))
        jax_grads = jax.jit(jax.grad(loss, argnums=(0, 1)))
        weights, xj = [v.value for v in layer.trainable_variables], ops.convert_to_tensor(x)
        return lambda: ready(jax_grads(weights, xj)[1])
    import torch

    xt = torch.tensor(x, requires_grad=True)

    def grads():
        layer.zero_grad()
        xt.grad = None
        torch.sin(layer(xt)).sum().backward()
        return xt.grad
    return lambda: ready(grads())


def convolution_gradient_times(model, batch, rounds=3, repeats=5):
    """(name, {formulation: best ms}) of each convolution of `model` alone at the training
    batch (layer_gradient on random inputs of the layer's input shape): the script's layer and
    Keras' own with the same weights (they differ on JAX and PyTorch), alternating."""
    rows = []
    for layer, _ in counted_layers(model):
        if not isinstance(layer, CONVOLUTIONS):
            continue
        x = np.random.default_rng(0).standard_normal((batch, *layer.input.shape[1:]), "float32")
        base = next(c for c in CONVOLUTIONS if isinstance(layer, c))
        stock = base.from_config(layer.get_config())
        stock.build(layer.input.shape)
        stock.set_weights(layer.get_weights())
        layers = {"script": layer, "keras": stock}
        parts = {k: layer_gradient(v, x) for k, v in layers.items()}
        best = alternating(parts, rounds, repeats)
        rows.append((layer.name, {k: seconds * 1e3 for k, seconds in best.items()}))
    return rows


def random_codes(classes_shape, count):
    """`count` one-hot codes of shape (latents, classes), each latent's class uniform."""
    latents, classes = classes_shape
    rng = np.random.default_rng(0)
    return np.eye(classes, dtype="float32")[rng.integers(classes, size=(count, latents))]


def decode_rate(decoder, classes_shape, batch=SCRIPTS["gs"].NLL_DECODE_BATCH,
                codes_count=5000, how="script"):
    """FLOP/s of decoding one-hot codes to logits: as the script does
    (`evaluation.predict_in_batches`, one compiled call per batch of `batch` codes), or
    (`how="predict"`) by `Model.predict` in batches of `batch`."""
    decoder_logits = evaluation.logits_model(decoder)
    codes = random_codes(classes_shape, codes_count)
    if how == "predict":
        decode = lambda: decoder_logits.predict(codes, batch_size=batch, verbose=0)  # noqa: E731
    else:
        decode = lambda: evaluation.predict_in_batches(decoder_logits, codes, batch)  # noqa: E731
    seconds = best_seconds(decode, 3)
    forward, _ = model_flops(decoder_logits)
    return forward * len(codes) / seconds, forward


def decode_layer_rates(decoder, classes_shape, batch=1000):
    """(name, ms per 1000 codes, GFLOP/s) of each layer of the decoder's forward pass that does
    counted work, timed alone in a compiled function on the previous layer's output."""
    decoder_logits = evaluation.logits_model(decoder)
    h = ops.convert_to_tensor(random_codes(classes_shape, batch))
    rows = []
    for layer in decoder_logits.layers[1:]:
        call = compiled(lambda t, layer=layer: layer(t))
        forward, _ = layer_flops(layer, False)
        if forward:
            first = compiled(lambda t, layer=layer: layer(t)[:1])  # no copy of the output
            seconds = best_seconds(lambda: ready(first(h)), 5)
            rows.append((layer.name, seconds / batch * 1e6, forward * batch / seconds / 1e9))
        h = call(h)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60_000,
                        help="training images per timed epoch (default: all 60000, a script's "
                             "epoch; fewer give a quicker run, in which an epoch's fixed cost "
                             "weighs more on each step)")
    parser.add_argument("--scripts", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS))
    parser.add_argument("--backend", choices=BACKENDS, default="tensorflow",
                        help="the Keras backend to measure (default: tensorflow)")
    parser.add_argument("--torch-compile", action="store_true",
                        help="with --backend torch: also each script with Keras' jit_compile=True "
                             "(torch.compile of the step) against eager, and its graph breaks; "
                             "for the MLP VAEs, their forward pass compiled whole")
    args = parser.parse_args()
    if args.torch_compile and BACKEND != "torch":
        parser.error("--torch-compile needs --backend torch")
    if not 1000 <= args.images <= 60_000:
        parser.error("--images must be between 1000 and 60000")
    print(f"machine: {run.machine()}; backend: {BACKEND}", flush=True)
    (x_train, _), _ = data.load_mnist()
    fractions, best_rate = {}, 0.0
    for name in args.scripts:
        module = SCRIPTS[name]
        cfg = module.Config()
        run.set_random_seed(0)  # on JAX and PyTorch without loading TensorFlow
        model = module.build_models(cfg)[0]
        x, y = training_inputs(name, x_train[: args.images])
        forward, training = model_flops(model)
        times = step_times(name, model, x, y, cfg.batch_size)
        step, grad_s, update_s, both_s = (times[k] for k in ("step", "gradients", "update", "both"))
        products_s = times.get("products")
        rate = matmul_rate(times["matmul"])
        best_rate = max(best_rate, rate)
        flops = training * cfg.batch_size
        step_rate = flops / step
        key = "gs_train" if name == "gs" else name
        fractions[key] = step_rate / rate
        print(f"{name}: float32 matrix product {MATMUL_N}^3 at {rate / 1e9:.1f} GFLOP/s. "
              f"Step {step * 1e3:.2f} ms for {flops / 1e9:.3f} GFLOP "
              f"({training / 1e6:.2f} MFLOP per image, forward {forward / 1e6:.2f}): "
              f"{step_rate / 1e9:.1f} GFLOP/s, {fractions[key]:.2f} of the matrix-product rate. "
              f"Gradients alone {grad_s * 1e3:.2f} ms ({flops / grad_s / rate:.2f} of the rate), "
              f"optimizer update {update_s * 1e3:.2f} ms, the rest "
              f"{(step - grad_s - update_s) * 1e3:.2f} ms; the counted FLOPs at the "
              f"matrix-product rate: {flops / rate * 1e3:.2f} ms. Gradients and update in one "
              f"compiled function {both_s * 1e3:.2f} ms, so Keras' step beyond the arithmetic "
              f"(data, loss tracking, callbacks, the call) {(step - both_s) * 1e3:.2f} ms. "
              f"Gradients and update on one image a batch {times['one image'] * 1e3:.2f} ms: "
              "the cost that does not shrink with the batch (the calls, each operation's "
              "dispatch)"
              + ("" if products_s is None else
                 f". Its Dense products alone, in one compiled function at the step's shapes: "
                 f"{products_s * 1e3:.2f} ms ({flops / products_s / rate:.2f} of the rate)"),
              flush=True)
        if BACKEND == "torch":
            t = direct_call_times(name, module, cfg, model, x, y)
            print(f"{name} with the layers called directly (common/direct_calls.py): step "
                  f"{t['direct']['step'] * 1e3:.2f} ms, gradients alone "
                  f"{t['direct']['gradients'] * 1e3:.2f} ms; through Keras' __call__: step "
                  f"{t['keras']['step'] * 1e3:.2f} ms, gradients alone "
                  f"{t['keras']['gradients'] * 1e3:.2f} ms (alternating)", flush=True)
        if BACKEND == "torch" and name == "vae":
            t = plain_torch_times(model, cfg, x, compile_too=args.torch_compile)
            print(f"vae in plain PyTorch, without Keras (the same layers, loss and RMSprop): "
                  f"step {t['plain'] * 1e3:.2f} ms eager, against {t['keras'] * 1e3:.2f} ms "
                  "through Keras (alternating epochs)"
                  + ("" if "compiled" not in t else
                     f"; its loss and update compiled by torch.compile "
                     f"{t['compiled'] * 1e3:.2f} ms"), flush=True)
            t = plain_torch_parts(model, cfg, x)
            print("    part by part, through Keras against plain PyTorch (alternating, one batch): "
                  + ", ".join(f"{part} {t['keras'][part] * 1e3:.2f} ms against "
                              f"{t['plain'][part] * 1e3:.2f}" for part in t["keras"]),
                  flush=True)
        if BACKEND == "torch" and name in MLP_VAES:
            t = torch_thread_times(model, cfg, x)
            print(f"{name} step by torch's intra-op threads (alternating epochs): " + ", ".join(
                f"{n} {s * 1e3:.2f} ms" for n, s in t.items()), flush=True)
        if args.torch_compile and name in MLP_VAES:
            t = torch_forward_compile_times(model, cfg, x)
            print(f"{name} gradients with the forward pass and loss compiled whole "
                  "(torch.compile, fullgraph; Keras' draws from torch's global generator, its "
                  "MPS query a constant, the add_loss lists cleared outside the call): "
                  + (f"compiling failed: {t['error']}" if "error" in t else
                     f"{t['compiled'] * 1e3:.2f} ms against {t['eager'] * 1e3:.2f} eager "
                     f"(alternating; the losses from the same draws differ by "
                     f"{t['difference']:.1e} of the loss)"), flush=True)
        if args.torch_compile:
            for global_draws, what in ((False, ""), (True, ", Keras' random draws replaced by "
                                                      "torch's global generator")):
                t = torch_compile_times(name, module, cfg, x, y, global_draws=global_draws)
                print(f"{name} {torch_compile_line(t, what)}", flush=True)
        if name == "gs":
            conv = conv_gradient_times(module, cfg, model, x)
            print(f"gs gradients alone with the convolutions as the script has them "
                  f"(common/kernels.py) {conv['script'] * 1e3:.2f} ms, with Keras' own Conv2D "
                  f"and Conv2DTranspose {conv['keras'] * 1e3:.2f} ms", flush=True)
            alone = "; ".join(
                f"{name} " + ", ".join(f"{k} {ms:.2f} ms" for k, ms in t.items())
                for name, t in convolution_gradient_times(model, cfg.batch_size))
            print("    each convolution alone, forward and gradients at the training batch: "
                  + alone, flush=True)
            decoder = module.build_models(cfg)[2]
            stock_decoder = stock_convolutions_models(module, cfg)[2]
            classes_shape = (cfg.num_latents, cfg.classes_per_latent)
            product, decodes, stock_decodes = matmul(), [], []
            for _ in range(3):  # alternating, as the training step's rounds
                rate = max(rate, matmul_rate(best_seconds(product, 5)))
                decodes.append(decode_rate(decoder, classes_shape))
                stock_decodes.append(decode_rate(stock_decoder, classes_shape))
            best_rate = max(best_rate, rate)
            nll_rate, per_code = max(decodes)
            fractions["gs_nll"] = nll_rate / rate
            print(f"gs NLL decode: {per_code / 1e6:.2f} MFLOP per code, {nll_rate / 1e9:.1f} "
                  f"GFLOP/s, {fractions['gs_nll']:.2f} of the matrix-product rate "
                  f"({rate / 1e9:.1f} GFLOP/s, the best over the step's and these rounds); "
                  f"with Keras' own transposed convolutions {max(stock_decodes)[0] / 1e9:.1f} "
                  "GFLOP/s", flush=True)
            layers = decode_layer_rates(decoder, classes_shape)
            print("    per layer, batches of 1000: " + "; ".join(
                f"{name} {ms:.1f} ms per 1000 codes, {r:.1f} GFLOP/s" for name, ms, r in layers)
                + f"; together {sum(ms for _, ms, _ in layers):.1f} ms per 1000 codes",
                flush=True)
            for batch in (100, 200, 500, 1000, 2000):
                for how in ("predict", "script"):
                    r, _ = decode_rate(decoder, classes_shape, batch, how=how)
                    what = "predict" if how == "predict" else "one compiled call per batch"
                    print(f"    decode by {what}, batches of {batch}: {r / 1e9:.1f} GFLOP/s, "
                          f"{r / rate:.2f} of the rate", flush=True)
    order = ("vae", "vmf", "gs_train", "gs_nll", "nice")
    print(" ".join(f"{k}={fractions[k]:.2f}" for k in order if k in fractions)
          + f" ({BACKEND}; its float32 matrix product {best_rate / 1e9:.1f} GFLOP/s)")


if __name__ == "__main__":
    main()
