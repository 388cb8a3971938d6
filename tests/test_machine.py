"""common/machine.py: the CPU, its vector and bfloat16 units, and the accelerator of the backend
in use."""
import pytest

from common import run


@pytest.mark.quick
@pytest.mark.parametrize("flags, units", [("fpu avx2 fma", "no AVX-512 or AMX"),
                                          ("avx2 avx512f avx512_bf16 amx_bf16 amx_tile",
                                           "AVX-512 AVX512-BF16 AMX-BF16")])
def test_machine_names_the_cpu_and_its_bfloat16_units(tmp_path, flags, units):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: {flags}\n")
    text = run.machine(cpuinfo)
    assert text.startswith("Test CPU 9000, ") and text.endswith(units)
    assert run.machine(tmp_path / "missing").endswith("no AVX-512 or AMX")


@pytest.mark.quick
def test_machine_names_the_accelerator_the_backend_uses(monkeypatch, tmp_path):
    """No GPU here: the backends' own device queries are replaced by a pretend one."""
    import types

    import jax
    import torch

    assert run.accelerator() is None  # this machine computes on its CPU
    monkeypatch.setattr(run.keras.backend, "backend", lambda: "torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Pretend GPU 80GB")
    assert run.machine(tmp_path / "missing").endswith("; Pretend GPU 80GB (PyTorch, cuda)")
    monkeypatch.setattr(run.keras.backend, "backend", lambda: "jax")
    gpu = types.SimpleNamespace(platform="gpu", device_kind="Pretend H")
    monkeypatch.setattr(jax, "devices", lambda: [gpu])
    assert run.accelerator() == "Pretend H (JAX, gpu)"
    monkeypatch.setattr(jax, "devices", lambda: 1 / 0)
    assert run.accelerator() == "an accelerator that could not be named"
