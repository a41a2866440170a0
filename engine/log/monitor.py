"""Host and GPU readings for TensorBoard: CPU RSS (psutil) and NVML utilisation, memory, temperature, power.

Every reading is optional. Without a GPU, without ``nvidia-ml-py`` or when the driver
refuses a query, the GPU part is silently empty: a monitor must never end a training run.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional

logger = logging.getLogger("engine")


def cpu_rss_gb() -> Optional[float]:
    """Resident memory of this process in GiB (None without psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process(os.getpid()).memory_info().rss / 2**30


class GpuMonitor:
    """NVML readings of the GPU this rank trains on.

    Args:
        nvml: the NVML module; ``None`` imports ``pynvml`` (nvidia-ml-py). Tests pass a double.
        device_index: the CUDA device (as torch numbers it); ``None`` means the current one.
    """

    def __init__(self, nvml: Any = None, device_index: Optional[int] = None) -> None:
        self._nvml = None
        self._handle = None
        self.name = ""
        try:
            if nvml is None:
                import torch

                if not torch.cuda.is_available():
                    return
                import pynvml as nvml
            nvml.nvmlInit()
            self._handle = _device_handle(nvml, device_index)
            self.name = _text(nvml.nvmlDeviceGetName(self._handle))
            self._nvml = nvml
        except Exception as exc:  # no driver, no library, no permission: monitoring is optional
            logger.debug(f"GPU monitor off: {exc!r}")
            self._handle = None

    @property
    def available(self) -> bool:
        return self._nvml is not None

    def read(self) -> Dict[str, float]:
        """``{util_percent, mem_used_gb, mem_total_gb, temperature_c, power_w}``, each only when readable."""
        if self._nvml is None:
            return {}
        nvml, handle, out = self._nvml, self._handle, {}
        for key, query in (
            ("util_percent", lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            ("mem_used_gb", lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used / 2**30),
            ("mem_total_gb", lambda: nvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30),
            ("temperature_c", lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
            ("power_w", lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),
        ):
            try:
                out[key] = float(query())
            except Exception:  # a query unsupported on this board (power on some GPUs): skip it
                continue
        return out

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None


def _device_handle(nvml: Any, device_index: Optional[int]) -> Any:
    """The NVML handle of torch's device: by UUID, since CUDA_VISIBLE_DEVICES renumbers devices."""
    index = device_index
    try:
        import torch

        if torch.cuda.is_available():
            index = torch.cuda.current_device() if index is None else index
            uuid = str(torch.cuda.get_device_properties(index).uuid)
            return nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
    except Exception:
        pass
    return nvml.nvmlDeviceGetHandleByIndex(index or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def all_gpu_names() -> List[str]:
    """Names and memory of the CUDA devices torch sees (empty without CUDA)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        return [f"{torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
                for i in range(torch.cuda.device_count())]
    except Exception:
        return []
