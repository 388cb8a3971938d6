"""Faster formulations of one op for one backend: the same sums, another order of work.

`Conv2DTranspose` is Keras' layer. On JAX, XLA:CPU computes a strided transposed convolution
as a convolution over the input spread out with zeros (s² times the work), and its kernel's
gradient as a convolution with a dilated window, several times slower than TensorFlow's for
the Gumbel-Softmax decoder's layers. Here, on JAX, the layer is written as the sum it is:
kernel tap (a, b) carries input position (h, w) to output position (s·h + a − c, s·w + b − c),
where c = k − 1 − (the padding on the left). So one matrix product gives every tap's output
plane at once (each input pixel times the k²·o columns of the kernel), and each output phase
(p mod s, q mod s) is the sum of its taps' planes, each shifted by its offset; the s² phases
are then interleaved. JAX differentiates that as one matrix product and shifts.
`Conv2D` likewise: on JAX a strided 'same' convolution is one matrix product of the k²
shifted, strided views of the padded input, side by side, with the kernel (im2col), which XLA:CPU
runs and differentiates faster than its convolution at the encoder's shapes.
On PyTorch the sums are PyTorch's own convolutions, given the input as it lies: Keras' PyTorch
backend first copies a channels-last input into a contiguous channels-first one, which sends
oneDNN to its slower channels-first kernels, and crops a transposed convolution's output only
after that copy. A permuted view of a channels-last tensor is what PyTorch calls its
channels_last memory format, which oneDNN computes directly (`conv_transpose_channels_last`,
`conv_channels_last`). A transposed convolution to fewer kernel columns (k²·o) than input
channels, the decoder's last layer, is faster as the sum itself: one matrix product and `fold`
(`conv_transpose_by_fold`).
`python benchmarks/roofline.py --backend jax|torch --scripts gs` times the model's gradients and
its NLL's decoding with these layers and with Keras' own, and each convolution alone both ways.
TensorFlow runs Keras' own.

`FusedAdam` is Adam's update as one fused kernel (TensorFlow's or PyTorch's) instead of a
chain of elementwise ops.
"""
import math

import keras


def _same_left_pad(kernel_size, stride):
    """The left padding of Keras' 'same' transposed convolution (no output padding)."""
    pad = stride + kernel_size - 2
    return min(pad // 2 + pad % 2, kernel_size - 1)


def _same_pads(sizes, kernel_size, stride):
    """[(before, after)] per spatial axis of `sizes`: Keras' 'same' padding of a convolution,
    enough for ⌈size/s⌉ outputs, the odd pixel after."""
    pads = [max((-(-size // stride) - 1) * stride + kernel_size - size, 0) for size in sizes]
    return [(p // 2, p - p // 2) for p in pads]


def tap_offsets(kernel_size, stride):
    """{(r, q): [(a, b, dh, dw)]}: output phase (r, q), the rows s·i + r and columns s·j + q,
    takes tap (a, b) of the input at (i + dh, j + dw)."""
    c = kernel_size - 1 - _same_left_pad(kernel_size, stride)
    taps = range(kernel_size)
    return {(r, q): [(a, b, (r + c - a) // stride, (q + c - b) // stride)
                     for a in taps if (a - c - r) % stride == 0
                     for b in taps if (b - c - q) % stride == 0]
            for r in range(stride) for q in range(stride)}


def conv_transpose_by_taps(x, kernel, stride):
    """Keras' 'same' transposed convolution with a square kernel, channels last, in JAX:
    x (n, h, w, i) and the kernel (k, k, o, i) -> (n, s·h, s·w, o)."""
    import jax.numpy as jnp

    k, _, o, i = kernel.shape
    n, h, w, _ = x.shape
    planes = (x.reshape(n * h * w, i) @ kernel.transpose(3, 0, 1, 2).reshape(i, k * k * o))
    # split, not sliced: the gradient is then one concatenation, not k² padded copies
    planes = jnp.split(planes.reshape(n, h, w, k * k * o), k * k, axis=3)

    def shifted(a, b, dh, dw):  # tap (a, b)'s plane at (i + dh, j + dw), zero outside
        plane = planes[a * k + b]
        padded = jnp.pad(plane, ((0, 0), (max(0, -dh), max(0, dh)), (max(0, -dw), max(0, dw)),
                                 (0, 0)))
        return padded[:, max(0, dh): max(0, dh) + h, max(0, dw): max(0, dw) + w]

    phases = {}
    for phase, taps in tap_offsets(k, stride).items():
        parts = [shifted(*tap) for tap in taps]
        phases[phase] = (sum(parts[1:], parts[0]) if parts else
                         jnp.zeros((n, h, w, o), x.dtype))
    if stride == 1:
        return phases[0, 0]
    rows = [jnp.stack([phases[r, q] for q in range(stride)], axis=3) for r in range(stride)]
    return jnp.stack(rows, axis=2).reshape(n, h * stride, w * stride, o)


def conv_by_columns(x, kernel, stride):
    """Keras' 'same' convolution with a square kernel, channels last, in JAX: x (n, h, w, i) and
    the kernel (k, k, i, o) -> (n, ⌈h/s⌉, ⌈w/s⌉, o), as one matrix product (im2col)."""
    import jax.numpy as jnp

    k, _, i, o = kernel.shape
    n, h, w, _ = x.shape
    ho, wo = -(-h // stride), -(-w // stride)
    x = jnp.pad(x, ((0, 0), *_same_pads((h, w), k, stride), (0, 0)))
    columns = jnp.concatenate([x[:, a: a + stride * (ho - 1) + 1: stride,
                                 b: b + stride * (wo - 1) + 1: stride]
                               for a in range(k) for b in range(k)], axis=3)
    return (columns.reshape(n * ho * wo, k * k * i) @ kernel.reshape(k * k * i, o)).reshape(
        n, ho, wo, o)


def _keras_window(full, k, stride, h, w):
    """Keras' 'same' window of a full, unpadded transposed convolution `full` (n, o,
    s·(h − 1) + k, s·(w − 1) + k), from c = k − 1 − the left padding, channels last again:
    (n, s·h, s·w, o)."""
    import torch

    c = k - 1 - _same_left_pad(k, stride)
    if c + stride > k:  # a stride above k - c: Keras pads with zeros
        full = torch.nn.functional.pad(full, (0, c + stride - k) * 2)
    return full[:, :, c: c + stride * h, c: c + stride * w].permute(0, 2, 3, 1)


def conv_transpose_channels_last(x, kernel, stride):
    """Keras' 'same' transposed convolution with a square kernel, channels last, in PyTorch:
    x (n, h, w, i) and the kernel (k, k, o, i) -> (n, s·h, s·w, o), PyTorch's unpadded transposed
    convolution of the channels_last view, cropped to Keras' window (from c = k − 1 − the left
    padding)."""
    import torch

    k = kernel.shape[0]
    _, h, w, _ = x.shape
    full = torch.nn.functional.conv_transpose2d(x.permute(0, 3, 1, 2), kernel.permute(3, 2, 0, 1),
                                                stride=stride)
    return _keras_window(full, k, stride, h, w)


def conv_transpose_by_fold(x, kernel, stride):
    """Keras' 'same' transposed convolution with a square kernel, channels last, in PyTorch, as
    its sum: x (n, h, w, i) and the kernel (k, k, o, i) -> (n, s·h, s·w, o). One matrix product
    gives each input pixel's k²·o contributions, and `fold` (col2im) adds each into its output
    pixel, s apart; then Keras' window is cropped (`_keras_window`)."""
    import torch

    k, _, o, i = kernel.shape
    n, h, w, _ = x.shape
    columns = x.reshape(n, h * w, i) @ kernel.permute(3, 2, 0, 1).reshape(i, o * k * k)
    full = torch.nn.functional.fold(columns.transpose(1, 2),
                                    (stride * (h - 1) + k, stride * (w - 1) + k), k, stride=stride)
    return _keras_window(full, k, stride, h, w)


def conv_transpose_torch(x, kernel, stride):
    """PyTorch's transposed convolution of the channels_last view, or, where the k²·o columns
    of the kernel are fewer than the i input channels (the Gumbel-Softmax decoder's last layer,
    32 channels to 1), the matrix product and `fold`: about twice as fast there at the model's
    shapes (forward and gradients), and 2 to 4.5 times slower at the strided layers', where the
    columns outnumber the channels (timed alone at the model's shapes; `python
    benchmarks/roofline.py --backend torch --scripts gs` prints each convolution as computed
    here and as Keras' own layer)."""
    k, _, o, i = kernel.shape
    if k * k * o < i:
        return conv_transpose_by_fold(x, kernel, stride)
    return conv_transpose_channels_last(x, kernel, stride)


def conv_channels_last(x, kernel, stride):
    """Keras' 'same' convolution with a square kernel, channels last, in PyTorch: x (n, h, w, i)
    and the kernel (k, k, i, o) -> (n, ⌈h/s⌉, ⌈w/s⌉, o), padded as Keras pads (the odd pixel
    after), then PyTorch's convolution of the channels_last view."""
    import torch

    (top, bottom), (left, right) = _same_pads(x.shape[1:3], kernel.shape[0], stride)
    x = torch.nn.functional.pad(x, (0, 0, left, right, top, bottom))  # last axis first
    return torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), kernel.permute(3, 2, 0, 1),
                                      stride=stride).permute(0, 2, 3, 1)


def _by_taps(layer):
    """True where the layer is computed here: JAX or PyTorch, 'same' padding, channels last, a
    square kernel, equal strides, no dilation, one group, no output padding."""
    return (keras.backend.backend() in ("jax", "torch") and layer.padding == "same"
            and layer.data_format == "channels_last" and tuple(layer.dilation_rate) == (1, 1)
            and len(set(layer.kernel_size)) == 1 and len(set(layer.strides)) == 1
            and getattr(layer, "groups", 1) == 1 and getattr(layer, "output_padding", None) is None)


class _ByTaps:
    """What both layers share: Keras' own call unless `_by_taps`; else the backend's entry of
    `_sums` (a function of the input, the kernel and the stride), then the bias and the
    activation as Keras adds them."""

    def call(self, inputs):
        if not _by_taps(self):
            return super().call(inputs)
        kernel = keras.ops.cast(self.kernel, inputs.dtype)
        outputs = self._sums[keras.backend.backend()](inputs, kernel, self.strides[0])
        if self.use_bias:
            outputs = keras.ops.add(outputs, keras.ops.reshape(self.bias, (1, 1, 1, self.filters)))
        return self.activation(outputs) if self.activation is not None else outputs


class Conv2D(_ByTaps, keras.layers.Conv2D):
    """Keras' Conv2D; where `_by_taps`, on JAX one matrix product, on PyTorch its convolution of
    the channels_last view (the module's docstring). Same name, weights and outputs (to
    rounding)."""

    _sums = {"jax": conv_by_columns, "torch": conv_channels_last}


class Conv2DTranspose(_ByTaps, keras.layers.Conv2DTranspose):
    """Keras' Conv2DTranspose; where `_by_taps`, on JAX computed tap by tap, on PyTorch its
    transposed convolution of the channels_last view (the module's docstring). Same name,
    weights and outputs (to rounding)."""

    _sums = {"jax": conv_transpose_by_taps, "torch": conv_transpose_torch}


@keras.saving.register_keras_serializable("common")
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam with the weights updated by a fused Adam kernel: TensorFlow's, one per
    weight, or PyTorch's, one for all of them; on JAX, Keras' own Adam.

    The arithmetic is Keras' own (bias-corrected step size, epsilon added outside the square
    root); tests/test_kernels.py checks both give the same weights. Keras' update is a chain of
    elementwise ops, each a pass over the weights, and on PyTorch each a call per weight; the
    fused kernel makes one pass (NICE's 19M parameters: benchmarks/nice_throughput.py; the
    vMF-VAE's update on PyTorch: benchmarks/roofline.py). `backends` names where
    `run.compile_model` uses it in place of the script's stock Adam (`BACKENDS`).
    """

    def __init__(self, *args, backends=("tensorflow", "torch"), **kwargs):
        super().__init__(*args, **kwargs)
        self.BACKENDS = tuple(backends)

    def get_config(self):
        return {**super().get_config(), "backends": list(self.BACKENDS)}

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or keras.backend.backend() != "tensorflow":
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = variable.dtype
        t = keras.ops.cast(self.iterations + 1, dtype)
        i = self._get_variable_index(variable)
        b1, b2 = keras.ops.cast(self.beta_1, dtype), keras.ops.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[i]), v=_handle(self._velocities[i]),
            beta1_power=keras.ops.power(b1, t), beta2_power=keras.ops.power(b2, t),
            lr=keras.ops.cast(learning_rate, dtype), beta1=b1, beta2=b2,
            epsilon=keras.ops.cast(self.epsilon, dtype), grad=keras.ops.cast(gradient, dtype))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if keras.backend.backend() != "torch" or self.amsgrad:
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        import torch

        # PyTorch's kernel divides by sqrt(v) / sqrt(1 - b2^t) + eps'; with eps' = eps /
        # sqrt(1 - b2^t) that is Keras' (sqrt(v) + eps) / sqrt(1 - b2^t)
        t = float(self.iterations.value) + 1
        correction = math.sqrt(1 - self.beta_2**t)
        index = [self._get_variable_index(v) for v in trainable_variables]
        with torch.no_grad():
            torch._fused_adam_(
                [v.value for v in trainable_variables], list(grads),
                [self._momentums[i].value for i in index],
                [self._velocities[i].value for i in index], [],
                [torch.tensor(t)] * len(index), lr=float(learning_rate), beta1=self.beta_1,
                beta2=self.beta_2, weight_decay=0.0, eps=self.epsilon / correction,
                amsgrad=False, maximize=False)


def _handle(variable):
    """The TensorFlow resource handle behind a Keras or a tf.Variable."""
    return variable.value.handle if isinstance(variable, keras.Variable) else variable.handle
