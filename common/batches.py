"""The batch order: every epoch a new permutation of the training set fixed by the seed and
the epoch, the same on every backend and after a resume."""
import keras
import numpy as np


class EpochBatches(keras.utils.PyDataset):
    """The training set in batches, in a new order every epoch (plain NumPy, any backend;
    `epoch_batches` serves the same batches through tf.data on TensorFlow).

    Epoch e visits the images in the order `default_rng([seed, e]).permutation(n)`, so a seed
    fixes every epoch's order, a resumed run sees the order an uninterrupted one would, and
    every epoch differs from the last. (`fit(..., shuffle=True)` on arrays does not do this
    once `keras.utils.set_random_seed` has run: under TensorFlow its shuffle then restarts from
    the same seed each epoch and the batches come in one fixed order for the whole run.)
    `epoch` is the absolute epoch being trained; the `EpochOrder` callback sets it.
    """

    def __init__(self, arrays, batch_size, seed):
        super().__init__()  # batches are made in the training loop's thread, in order
        self.arrays, self.batch_size, self.seed = arrays, batch_size, seed
        self.n, self.epoch, self._order = len(arrays[0]), 0, (None, None)

    def __len__(self):
        return -(-self.n // self.batch_size)

    def order(self):
        """This epoch's permutation of the training images (made once per epoch)."""
        if self._order[0] != self.epoch:
            self._order = (self.epoch, np.random.default_rng([self.seed, self.epoch])
                           .permutation(self.n))
        return self._order[1]

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        rows = self.order()[i * self.batch_size: (i + 1) * self.batch_size]
        batch = tuple(a[rows] for a in self.arrays)
        return batch if len(batch) > 1 else batch[0]


class EpochOrder(keras.callbacks.Callback):
    """Tells `EpochBatches` which epoch is starting (the absolute one, also after a resume)."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = epoch


def epoch_batches(x, y, batch_size, seed):
    """The shuffled training batches and the callback that must be among `fit`'s callbacks.

    On JAX and PyTorch the batches are the `EpochBatches` themselves. On TensorFlow the same
    batches are served by `tf.data`: Keras feeds a PyDataset to TensorFlow through a Python
    generator, one call per batch, which made the MLP VAEs' epochs about twice as slow
    (benchmarks/epoch_time.py); here Python only computes each epoch's permutation.
    """
    batches = EpochBatches((x,) if y is None else (x, y), batch_size, seed)
    if keras.backend.backend() == "tensorflow":
        return _tf_batches(batches), EpochOrder(batches)
    return batches, EpochOrder(batches)


def _tf_batches(batches):
    """`batches` (an EpochBatches) as a tf.data pipeline: the same batches in the same order."""
    import tensorflow as tf

    def epoch_indices(_):
        p = tf.numpy_function(lambda: batches.order().astype(np.int64), [], tf.int64,
                              stateful=True)
        p.set_shape([batches.n])
        return tf.data.Dataset.from_tensor_slices(p).batch(batches.batch_size)

    arrays = batches.arrays if len(batches.arrays) > 1 else batches.arrays[0]
    data = tf.data.Dataset.zip(tf.data.Dataset.from_tensors(0).flat_map(epoch_indices),
                               tf.data.Dataset.from_tensors(arrays).repeat())
    data = data.map(lambda i, a: tf.nest.map_structure(lambda t: tf.gather(t, i), a),
                    num_parallel_calls=tf.data.AUTOTUNE)
    data = data.apply(tf.data.experimental.assert_cardinality(len(batches)))
    return data.prefetch(tf.data.AUTOTUNE)

