"""Model FLOPs utilisation (MFU): the FLOPs the model needs, against what the devices could do.

``MFU = items/s × training FLOPs per item / peak FLOP/s of the devices that did the work``,
an item being a sample or a token, whichever the throughput counts.

FLOPs per item are counted once, from the network itself, by ``torch.utils.flop_counter.
FlopCounterMode`` over a forward pass on the *meta* device: parameters and inputs become
meta tensors of the same shapes, so the count costs no memory and no arithmetic, whatever
the model's size, and under ZeRO-3 the full shapes (``ds_shape``) are used. The counter
works at the level of aten ops (matmuls, convolutions, attention), so whatever Python
composes them is counted, with no module-level patching. DeepSpeed's flops profiler was
the alternative; it patches ``torch.nn.functional`` globally for the duration and needs
a real forward on real data, and its number for a matmul is the same ``2·m·n·k``.

Training FLOPs are 3× the forward's: the backward does two matmuls for each forward one
(the gradient of the input and of the weight). Recomputation under activation
checkpointing is not counted, as is the convention for MFU (the model's FLOPs, not the
hardware's), so turning checkpointing on lowers MFU by the extra time it takes.

Peaks are dense (no sparsity) tensor-core numbers from the vendors' data sheets, per
device, for 16-bit floats and for TF32 (what fp32 training uses on tensor cores). A
device not in the table, and every CPU, has no known peak: MFU is then reported only when
``trainer.peak_tflops`` gives one.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Dict, Iterator, Optional, Tuple

import torch
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from engine.data.batch import batch_size

logger = logging.getLogger("engine")

#: Dense peak TFLOP/s per device as (bf16/fp16, tf32), matched as a substring of
#: ``torch.cuda.get_device_name()``, longest name first (``H100 PCIe`` before ``H100``).
PEAK_TFLOPS: Dict[str, Tuple[float, float]] = {
    "B200": (2250.0, 1100.0),
    "H200": (989.4, 494.7),
    "H100 PCIe": (756.0, 378.0),
    "H100": (989.4, 494.7),  # SXM
    "A100": (312.0, 156.0),
    "L40S": (362.1, 183.2),
    "L4": (121.0, 60.0),
    "A10": (125.0, 62.5),
    "RTX 4090": (165.2, 82.6),
    "V100": (125.0, 15.7),  # no TF32: the fp32 number is the CUDA cores'
    "MI300X": (1307.4, 653.7),
}

#: Training FLOPs per forward FLOP (forward, then a backward of twice its cost).
TRAINING_FLOPS_PER_FORWARD = 3


def forward_flops(module: torch.nn.Module, *args: Any, **kwargs: Any) -> int:
    """FLOPs of ``module(*args, **kwargs)``, counted on the meta device (nothing is computed).

    Count before ``deepspeed.initialize`` wraps the network: under ZeRO-3 the engine's
    forward hooks gather parameters, a collective that this rank alone would enter. A
    network built under ``zero.Init`` is fine before that (its full shapes are read).

    Args:
        module: the network; its parameters and buffers are replaced by meta tensors of
            the same shape for the count, and left untouched.
        args, kwargs: an example input (tensors anywhere in lists, tuples and dicts; on any
            device, or already meta). Only the shapes matter.

    Returns:
        The forward's FLOPs for that input (a multiply-add is 2 FLOPs).

    Raises:
        ValueError: the forward cannot run on meta tensors (it reads values, e.g.
            ``.item()`` or data-dependent control flow); leave MFU out then, or
            count the FLOPs by hand.
    """
    state = {name: _meta_like(t) for name, t in list(module.named_parameters()) + list(module.named_buffers())}
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            functional_call(module, state, _to_meta(args), _to_meta(kwargs), strict=False)
    except (RuntimeError, NotImplementedError) as exc:
        raise ValueError(f"cannot count the FLOPs of {type(module).__name__} on the meta device "
                         f"(its forward needs real values): {exc}") from exc
    return int(counter.get_total_flops())


def training_flops_per_item(module: torch.nn.Module, items: int, *args: Any, **kwargs: Any) -> float:
    """Training FLOPs per sample or token: 3 × the forward's FLOPs for the example input / ``items``.

    Args:
        module: the network.
        items: how many samples (or tokens) the example input holds.
        args, kwargs: the example input, as for ``forward_flops``.

    Returns:
        FLOPs per item, for ``mfu``.
    """
    if items <= 0:
        raise ValueError(f"items must be positive, got {items}")
    return TRAINING_FLOPS_PER_FORWARD * forward_flops(module, *args, **kwargs) / items


class TrainingFlopsCounter:
    """Training FLOPs per sample, counted from the first training micro-batch's forward as it runs.

    The model bundle runs ``run_step`` (forward and loss) of its first micro-batch inside
    ``counting``: ``FlopCounterMode`` sees the aten ops as they execute, however ``run_step``
    calls the network, under any ZeRO stage (gathers and reductions are not FLOPs), at no
    extra arithmetic; every later call is a no-op. A tensor-parallel rank counts its own
    share of the work, which is what its device does. Micro-batches of other shapes
    (variable lengths) are assumed to cost the same per sample.
    """

    def __init__(self) -> None:
        self.per_sample: Optional[float] = None
        self._pending = True

    @contextlib.contextmanager
    def counting(self, data: Any) -> Iterator[None]:
        """Count the block's FLOPs the first time (``data``: that micro-batch, for its number of samples)."""
        if not self._pending:
            yield
            return
        self._pending = False
        counter = FlopCounterMode(display=False)
        with counter:
            yield
        self.per_sample = TRAINING_FLOPS_PER_FORWARD * counter.get_total_flops() / max(batch_size(data), 1)


def device_peak_tflops(device_name: str, dtype: torch.dtype) -> Optional[float]:
    """The table's dense peak TFLOP/s of ``device_name`` for ``dtype``, or None when unknown.

    Args:
        device_name: as ``torch.cuda.get_device_name()`` gives it.
        dtype: the training's compute dtype: bf16/fp16 use the 16-bit peak, any other the TF32 one.
    """
    lowered = device_name.lower()
    for name in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if name.lower() in lowered:
            half, tf32 = PEAK_TFLOPS[name]
            return half if dtype in (torch.bfloat16, torch.float16) else tf32
    return None


def peak_flops(override_tflops: float, device: str, dtype: torch.dtype = torch.float32) -> Optional[float]:
    """Peak FLOP/s of one device: ``trainer.peak_tflops`` when set, else the table's, else None.

    When there is none (a CPU, a GPU not in the table) one info line says that MFU is
    not reported and how to get it.

    Args:
        override_tflops: ``trainer.peak_tflops`` (0 means "not set").
        device: ``"cuda"`` or ``"cpu"``, where training runs.
        dtype: the compute dtype (see ``device_peak_tflops``).

    Returns:
        FLOP/s (not TFLOP/s), or None.
    """
    if override_tflops > 0:
        return override_tflops * 1e12
    name = torch.cuda.get_device_name() if device == "cuda" and torch.cuda.is_available() else device
    tflops = device_peak_tflops(name, dtype)
    if tflops is None:
        logger.info(f"MFU is not reported: no peak FLOP/s is known for {name!r}; set trainer.peak_tflops to report it")
        return None
    return tflops * 1e12


def mfu(items_per_s: float, flops_per_item: float, peak: float, num_devices: int = 1) -> float:
    """Model FLOPs utilisation, in [0, 1] for a plausible run.

    Args:
        items_per_s: samples or tokens per second, of all ``num_devices`` together.
        flops_per_item: training FLOPs per sample or token (``training_flops_per_item``).
        peak: peak FLOP/s of one device (``peak_flops``).
        num_devices: devices whose work ``items_per_s`` counts (the data-parallel world).

    Returns:
        achieved FLOP/s / (peak × num_devices).
    """
    if peak <= 0 or num_devices < 1:
        raise ValueError(f"peak must be positive and num_devices at least 1, got {peak} and {num_devices}")
    return items_per_s * flops_per_item / (peak * num_devices)


def _meta_like(tensor: torch.Tensor) -> torch.Tensor:
    shape = getattr(tensor, "ds_shape", tensor.shape)  # a ZeRO-3 partition holds a sliver; ds_shape is the whole
    return torch.empty(shape, dtype=tensor.dtype, device="meta")


def _to_meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value if value.is_meta else _meta_like(value)
    if isinstance(value, dict):
        return {k: _to_meta(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_meta(v) for v in value)
    return value
