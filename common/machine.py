"""Naming the machine a run's timings come from: the CPU and its vector units, then the
accelerator the Keras backend computes on (asked of that backend only)."""
import os
import platform
from pathlib import Path


def accelerator():
    """The GPU (or other accelerator) the Keras backend computes on, or None on the CPU.

    Asks the backend in use only, so JAX and PyTorch runs never import TensorFlow.
    """
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return f"{details.get('device_name', gpus[0].name)} (TensorFlow)"
        elif backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                return f"{device.device_kind} (JAX, {device.platform})"
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"{torch.cuda.get_device_name(0)} (PyTorch, cuda)"
            if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
                return "Apple GPU (PyTorch, mps)"
    except Exception:  # a broken driver must not stop the run that reports it
        return "an accelerator that could not be named"
    return None


def machine(cpuinfo="/proc/cpuinfo"):
    """What a run's timings come from: the CPU's model name, cores and wide-vector/bfloat16
    units, then the accelerator the backend computes on, if any."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    units = [u for u, flag in (("AVX-512", "avx512f"), ("AVX512-BF16", "avx512_bf16"),
                               ("AMX-BF16", "amx_bf16")) if flag in flags]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = f"{name}, {cores} cores, {' '.join(units) or 'no AVX-512 or AMX'}"
    gpu = accelerator()
    return f"{cpu}; {gpu}" if gpu else cpu

