"""Device and dtype picking, environment records and out-of-memory detection."""

from __future__ import annotations

import logging

import pytest
import torch

from pipeline.engine import devices
from pipeline.engine.devices import describe_environment, is_out_of_memory, pick_device, pick_dtype
from pipeline.errors import DeviceError


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)


@pytest.fixture
def one_cuda_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(devices, "_mps_available", lambda: True)


def test_auto_falls_back_to_the_cpu(no_gpu: None) -> None:
    assert pick_device() == torch.device("cpu")
    assert pick_device("AUTO") == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch: pytest.MonkeyPatch, one_cuda_gpu: None) -> None:
    assert pick_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("mps")


def test_explicit_devices(one_cuda_gpu: None) -> None:
    assert pick_device("cuda") == torch.device("cuda")
    assert pick_device("cuda:0") == torch.device("cuda", 0)
    assert pick_device("mps") == torch.device("mps")
    with pytest.raises(DeviceError, match=r"cuda:0 to cuda:0"):
        pick_device("cuda:1")


@pytest.mark.parametrize("name", ["cuda", "cuda:1", "mps"])
def test_unavailable_explicit_devices_raise(no_gpu: None, name: str) -> None:
    with pytest.raises(DeviceError, match=name.split(":")[0]):
        pick_device(name)


@pytest.mark.parametrize("name", ["gpu0", "meta", ""])
def test_unknown_devices_raise(no_gpu: None, name: str) -> None:
    if not name:
        assert pick_device(name) == torch.device("cpu")  # empty means auto
        return
    with pytest.raises(DeviceError, match="allowed"):
        pick_device(name)


@pytest.mark.parametrize("preference", ["auto", "fp32", "fp16", "bf16", "half", "bfloat16"])
def test_the_cpu_never_gets_half_precision(preference: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.engine.devices"):
        assert pick_dtype(torch.device("cpu"), preference) == torch.float32
    assert ("fp32 instead" in caplog.text) == (preference not in ("auto", "fp32"))


def test_cuda_dtypes(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    cuda = torch.device("cuda", 0)
    assert pick_dtype(cuda) == torch.float16
    assert pick_dtype(cuda, "fp32") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert pick_dtype(cuda, "bf16") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with caplog.at_level(logging.WARNING, logger="pipeline.engine.devices"):
        assert pick_dtype(cuda, "bf16") == torch.float16
    assert "bfloat16" in caplog.text


def test_mps_defaults_to_float32_but_allows_fp16() -> None:
    mps = torch.device("mps")
    assert pick_dtype(mps) == torch.float32
    assert pick_dtype(mps, "fp16") == torch.float16


def test_unknown_dtype_raises() -> None:
    with pytest.raises(DeviceError, match="fp8"):
        pick_dtype(torch.device("cpu"), "fp8")


def test_environment_names_versions_device_and_dtype() -> None:
    env = describe_environment(torch.device("cpu"), torch.float32)
    assert env["torch"] == torch.__version__
    assert env["device"] == "cpu" and env["dtype"] == "float32"
    assert env["diffusers"] and env["transformers"] and env["device_name"]
    assert all(isinstance(value, str) for value in env.values())


def test_out_of_memory_detection() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))
