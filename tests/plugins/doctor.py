"""`nvml_stub`: a fake nvidia-ml-py put in place of `pynvml` (the import boundary of services.gpu).

    def test_x(nvml_stub):
        nvml_stub.add("NVIDIA H100 80GB HBM3", sm=(9, 0))
        nvml_stub.driver, nvml_stub.cuda = "570.124.06", 12080
        # services.gpu.gpus() now returns one H100 on driver 570 (CUDA 12.8)

With no GPU added, nvmlInit raises like it does on a machine without a driver.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest


class NVMLError(Exception):
    pass


@dataclass
class FakeNVML:
    driver: str = "570.124.06"
    cuda: int | None = 12080  # nvmlSystemGetCudaDriverVersion_v2: 12080 = CUDA 12.8
    devices: list[dict] = field(default_factory=list)
    NVMLError: type = NVMLError

    def add(self, name: str, sm: tuple[int, int], memory: int = 80 * 1024**3) -> FakeNVML:
        self.devices.append({"name": name, "sm": sm, "memory": memory, "uuid": f"GPU-{len(self.devices):04d}"})
        return self

    # ---- the pynvml functions services.gpu calls ----
    def nvmlInit(self) -> None:
        if not self.devices:
            raise NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        if self.cuda is None:
            raise NVMLError("Function Not Found")
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict:
        return self.devices[index]

    def nvmlDeviceGetName(self, handle: dict) -> str:
        return handle["name"]

    def nvmlDeviceGetUUID(self, handle: dict) -> str:
        return handle["uuid"]

    def nvmlDeviceGetMemoryInfo(self, handle: dict) -> SimpleNamespace:
        return SimpleNamespace(total=handle["memory"], used=0, free=handle["memory"])

    def nvmlDeviceGetUtilizationRates(self, handle: dict) -> SimpleNamespace:
        return SimpleNamespace(gpu=0, memory=0)

    def nvmlDeviceGetTemperature(self, handle: dict, sensor: int) -> int:
        return 40

    def nvmlDeviceGetPowerUsage(self, handle: dict) -> int:
        return 100_000

    def nvmlDeviceGetCudaComputeCapability(self, handle: dict) -> tuple[int, int]:
        return handle["sm"]


@pytest.fixture
def nvml_stub(monkeypatch: pytest.MonkeyPatch) -> FakeNVML:
    fake = FakeNVML()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake
