"""GPU and system probes (nvidia-ml-py, psutil) returning plain dataclasses.

``gpus()`` never raises: on a machine without a driver it returns an empty list and
``gpu_error()`` says why (one line).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    uuid: str
    memory_total: int
    memory_used: int
    utilization: int | None  # percent
    temperature: int | None  # Celsius
    power_watts: float | None
    sm: str | None  # compute capability such as "9.0"
    driver: str
    cuda_driver: str | None  # highest CUDA version the driver supports, e.g. "12.8"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SystemInfo:
    cpu_percent: float
    cpu_count: int
    memory_total: int
    memory_used: int
    disk_total: int
    disk_used: int
    disk_free: int
    load_average: tuple[float, float, float]

    def as_dict(self) -> dict:
        return asdict(self)


_last_error: str | None = None


def _nvml():
    import pynvml

    return pynvml


def gpus() -> list[GPU]:
    """Every GPU NVML sees; [] without a driver or without nvidia-ml-py."""
    global _last_error
    try:
        nvml = _nvml()
        nvml.nvmlInit()
    except ImportError:
        _last_error = "nvidia-ml-py is not installed"
        return []
    except Exception as err:  # NVMLError subclasses: library not found, driver not loaded, ...
        _last_error = f"no NVIDIA driver ({type(err).__name__})"
        return []
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        try:
            cuda_int = nvml.nvmlSystemGetCudaDriverVersion_v2()
            cuda_driver = f"{cuda_int // 1000}.{cuda_int % 1000 // 10}"
        except Exception:  # older drivers lack the call
            cuda_driver = None
        result = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            result.append(
                GPU(
                    index=index,
                    name=_text(nvml.nvmlDeviceGetName(handle)),
                    uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                    memory_total=int(memory.total),
                    memory_used=int(memory.used),
                    utilization=_maybe(lambda h=handle: nvml.nvmlDeviceGetUtilizationRates(h).gpu),
                    temperature=_maybe(lambda h=handle: nvml.nvmlDeviceGetTemperature(h, 0)),
                    power_watts=_maybe(lambda h=handle: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0),
                    sm=_maybe(lambda h=handle: "{}.{}".format(*nvml.nvmlDeviceGetCudaComputeCapability(h))),
                    driver=driver,
                    cuda_driver=cuda_driver,
                )
            )
        _last_error = None
        return result
    except Exception as err:
        _last_error = f"NVML query failed ({type(err).__name__}: {err})"
        log.warning("%s", _last_error)
        return []
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # shutting down a half-initialised NVML is best effort
            log.debug("nvmlShutdown failed", exc_info=True)


def gpu_error() -> str | None:
    """Why ``gpus()`` last returned nothing, or None."""
    return _last_error


def _maybe(func):
    try:
        return func()
    except Exception:  # a sensor not supported on this board
        return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def system(path: Path | str = "/") -> SystemInfo:
    memory = psutil.virtual_memory()
    try:
        disk = psutil.disk_usage(str(path))
        disk_total, disk_used, disk_free = disk.total, disk.used, disk.free
    except OSError:
        disk_total = disk_used = disk_free = 0
    return SystemInfo(
        cpu_percent=psutil.cpu_percent(interval=None),
        cpu_count=psutil.cpu_count() or 1,
        memory_total=memory.total,
        memory_used=memory.total - memory.available,
        disk_total=disk_total,
        disk_used=disk_used,
        disk_free=disk_free,
        load_average=os.getloadavg(),
    )
