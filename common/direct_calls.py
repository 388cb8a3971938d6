"""On PyTorch, a Functional model's forward pass that calls its layers' `call` directly.

Keras runs PyTorch eagerly, so every `layer(...)` in a training step passes, in Python, through
`Layer.__call__` (argument conversion, the call signature's bookkeeping, input checks, the
training flag's resolution, masks, name and autocast scopes), torch.nn.Module's `__call__` and
Operation's traceback wrapper before the layer's `call` runs. For the MLP VAEs, whose
arithmetic is small, that costs more than the arithmetic: on one image a batch, where the
arithmetic is a hundredth, PyTorch's gradients and update took 6.5 ms against TensorFlow's whole
step at batch 100, 4.6 ms (results/benchmarks/roofline_backends_xeon.txt).

A model's graph is fixed once built, and for most layers that bookkeeping decides nothing at run
time. `install(model)` replaces the model's `call` with a walk over its graph that calls each such
layer's `call` with the arguments Keras would pass; the model's own `__call__` still runs once a
batch (it converts the inputs, resolves `training`, clears the losses the layers add and
collects them). A layer is called directly only where `__call__` would change nothing (every
clause below is decided once, from the built graph):
  - float32 throughout: the layer computes in its variables' dtype and its floating inputs in the
    graph already have its input dtype (no autocast, no cast of the inputs);
  - no masks in the graph, no activity regulariser, no rematerialisation or quantisation, no
    PyTorch hooks on the layer;
  - `training`: given to a layer whose `call` takes it whenever the model was called with it, as
    Keras' Functional.call propagates it (a value fixed in the graph wins, as in Keras).
Every other layer, a nested layer inside a custom layer's `call`, and a model with a mask or a
mixed-precision policy (then nothing is installed) go through `__call__` as before. The
arithmetic is the same operations in the same order, so losses and gradients are equal to the
bit (tests/test_direct_calls.py). `benchmarks/roofline.py --backend torch` times the gradients
both ways.
"""

import keras

_FUNCTIONAL = keras.src.models.functional.Functional
_is_float = keras.backend.is_float_dtype
# Keras' own graph walk and input handling, which `_walk` reuses (keras 3.15)
_KERAS_INTERNALS = ("_run_through_graph", "_nodes_by_depth", "_standardize_inputs",
                    "_flatten_layers", "_call_has_training_arg")


def _layer_is_plain(layer):
    """Built, with nothing of `__call__`'s extras in use (dtypes: `direct_layers`, model-wide)."""
    return (layer.built and getattr(layer, "activity_regularizer", None) is None
            and not getattr(layer, "_remat_mode", None)
            and getattr(layer, "quantization_mode", None) is None
            and not any(getattr(layer, h, None) for h in
                        ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                         "_backward_pre_hooks")))


def _node_is_plain(node):
    """Whether `node.operation(...)`'s `__call__` would pass the node's inputs to `call` as they
    are and do nothing else that matters."""
    layer = node.operation
    if not _layer_is_plain(layer) or getattr(layer, "_call_context_args", None) != {"training"}:
        return False
    for t in node.input_tensors:
        if getattr(t, "_keras_mask", None) is not None:
            return False
        if (layer.autocast and _is_float(t.dtype)
                and keras.backend.standardize_dtype(t.dtype) != layer.input_dtype):
            return False
    return all(getattr(t, "_keras_mask", None) is None for t in node.outputs)


def direct_layers(model):
    """The ids of the layers of `model`, and of the Functional models nested in it, that every
    node of theirs lets be called directly; None if the model cannot use direct calls at all
    (a layer computes in another dtype than its variables: mixed precision)."""
    layers = model._flatten_layers(include_self=True, recursive=True)
    if any(layer.compute_dtype != layer.variable_dtype for layer in layers):
        return None
    verdict = {}
    for functional in layers:
        if not isinstance(functional, _FUNCTIONAL):
            continue
        for nodes in functional._nodes_by_depth.values():
            for node in nodes:
                if node.operation is not None and not node.is_input:
                    key = id(node.operation)
                    verdict[key] = verdict.get(key, True) and _node_is_plain(node)
    return {key for key, plain in verdict.items() if plain}


def _caller(op, direct, training):
    """What Keras' Functional.call runs for `op`'s nodes when called with `training` (not None):
    `op(..., training=training)`, with `op.call` in place of `op` where `op` is plain."""
    if id(op) not in direct:
        def keras_path(*args, **kwargs):
            kwargs["training"] = training  # as keras.src.models.functional.operation_fn
            return op(*args, **kwargs)
        return keras_path
    if isinstance(op, _FUNCTIONAL):
        def nested(inputs, mask=None, **kwargs):  # a nested model's node passes mask=None
            if mask is not None or set(kwargs) - {"training"}:
                return op(inputs, mask=mask, **{**kwargs, "training": training})
            return _walk(op, direct, op._standardize_inputs(inputs), training)
        return nested
    if op._call_has_training_arg:
        def with_training(*args, **kwargs):
            kwargs["training"] = training
            return op.call(*args, **kwargs)
        return with_training
    return op.call


def _walk(model, direct, inputs, training):
    """Functional.call of `model` on standardised `inputs`, the plain layers called directly."""
    outputs = model._run_through_graph(
        inputs, operation_fn=lambda op: _caller(op, direct, training))
    return keras.src.models.functional.unpack_singleton(outputs)


def install(model):
    """On PyTorch, make `model` (a built Functional model) call its plain layers directly
    whenever it is called with `training` set, as Keras' trainer calls it; return whether it
    did. Elsewhere, or for a model with a mixed-precision policy, nothing changes."""
    if (keras.backend.backend() != "torch" or not isinstance(model, _FUNCTIONAL)
            or not all(hasattr(model, a) for a in _KERAS_INTERNALS)):
        return False  # another Keras than requirements.txt's may lack what the walk reads
    direct = direct_layers(model)
    if direct is None:
        return False
    uninstall(model)  # installing again replaces, never wraps, the walk
    keras_call = model.call

    def call(inputs, training=None, mask=None, **kwargs):
        if training is None or mask is not None or kwargs:
            return keras_call(inputs, training=training, mask=mask, **kwargs)
        return _walk(model, direct, model._standardize_inputs(inputs), training)
    object.__setattr__(model, "call", call)
    return True


def uninstall(model):
    """Undo `install`: `model` calls every layer through Keras' `__call__` again."""
    vars(model).pop("call", None)
