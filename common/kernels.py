"""Faster formulations of one op for one backend: the same sums, another order of work.

`Conv2DTranspose` is Keras' layer. On JAX, XLA:CPU computes a strided transposed convolution
as a convolution over the input spread out with zeros (s² times the work), and its kernel's
gradient as a convolution with a dilated window, several times slower than TensorFlow's for
the Gumbel-Softmax decoder's strided layers. Here, on JAX, the layer is written as the sum it
is: kernel tap (a, b) carries input position (h, w) to output position (s·h + a − c,
s·w + b − c), where c = k − 1 − (the padding on the left). The output positions of one phase
(p mod s, q mod s) take their taps' products of the input, shifted, with the tap's matrix, one
matrix product per tap; the s² phases are then interleaved. JAX differentiates that as matrix
products too. `python benchmarks/roofline.py --backend jax --scripts gs` times the model's
gradients with and without it (results/benchmarks/roofline_gs_jax.txt). Stride 1, and every
other backend, run Keras' own.
"""
import keras


def _same_left_pad(kernel_size, stride):
    """The left padding of Keras' 'same' transposed convolution (no output padding)."""
    pad = stride + kernel_size - 2
    return min(pad // 2 + pad % 2, kernel_size - 1)


def conv_transpose_by_phases(x, kernel, strides):
    """Keras' 'same' transposed convolution, channels last, in JAX: x (n, h, w, i) and the
    kernel (kh, kw, o, i) -> (n, s·h, s·w, o), one matrix product per tap."""
    import jax.numpy as jnp

    (kh, kw), (sh, sw) = kernel.shape[:2], strides
    n, h, w, _ = x.shape
    ch, cw = kh - 1 - _same_left_pad(kh, sh), kw - 1 - _same_left_pad(kw, sw)

    def shifted(dh, dw):  # x[:, i + dh, j + dw], zero outside the image
        padded = jnp.pad(x, ((0, 0), (max(0, -dh), max(0, dh)), (max(0, -dw), max(0, dw)),
                             (0, 0)))
        return padded[:, max(0, dh): max(0, dh) + h, max(0, dw): max(0, dw) + w]

    rows = []
    for r in range(sh):  # output rows s·i + r read input row i + (r + c − a) / s of tap a
        phase_row = []
        for q in range(sw):
            products = [jnp.einsum("nhwi,oi->nhwo", shifted((r + ch - a) // sh,
                                                            (q + cw - b) // sw), kernel[a, b])
                        for a in range(kh) if (a - ch - r) % sh == 0
                        for b in range(kw) if (b - cw - q) % sw == 0]
            phase_row.append(sum(products[1:], products[0]) if products else
                             jnp.zeros((n, h, w, kernel.shape[2]), x.dtype))
        rows.append(jnp.stack(phase_row, axis=3))
    return jnp.stack(rows, axis=2).reshape(n, h * sh, w * sw, kernel.shape[2])


class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """Keras' Conv2DTranspose; on JAX, with strides, 'same' padding and channels last, computed
    tap by tap (the module's docstring). Same name, weights and outputs (to rounding)."""

    def call(self, inputs):
        plain = (keras.backend.backend() != "jax" or tuple(self.strides) == (1, 1)
                 or self.padding != "same" or self.data_format != "channels_last"
                 or self.output_padding is not None or tuple(self.dilation_rate) != (1, 1))
        if plain:
            return super().call(inputs)
        kernel = keras.ops.cast(self.kernel, inputs.dtype)
        outputs = conv_transpose_by_phases(inputs, kernel, tuple(self.strides))
        if self.use_bias:
            outputs = keras.ops.add(outputs, keras.ops.reshape(self.bias, (1, 1, 1, self.filters)))
        return self.activation(outputs) if self.activation is not None else outputs
