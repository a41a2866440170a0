"""Pipeline parallel: a network that can list itself as layers, run as DeepSpeed pipeline stages.

Config: ``deepspeed.pipeline = dict(stages=N, partition_method="parameters", micro_batches=GA)``.
``stages`` splits the layers over N consecutive ranks (world size must be a multiple);
``partition_method`` is DeepSpeed's (``parameters``, ``uniform``, ``type:<regex>``);
``micro_batches`` is the pipeline's micro-batches per optimizer step, which *is* the
gradient accumulation of the run: leave it out, or make it equal
``solver.gradient_accumulation_batch``. DeepSpeed runs pipelines with ZeRO 0-1 only.

The protocol (why: DeepSpeed's pipeline engine owns forward, loss and backward of a whole
step, so a free-form ``run_step`` cannot be split into stages):

- the network has ``to_layers() -> list`` of modules/callables applied in order, each
  taking the previous one's output (a tensor or a tuple of tensors);
- the loss is ``network.loss_fn(outputs, labels)``, else the bundle's
  ``pipeline_loss(outputs, labels)``;
- the model bundle has ``pipeline_inputs(data) -> (inputs, labels)`` for one batch of the
  loader (default: ``(data["input"], data["label"])`` or a 2-tuple batch as is).

``run_step`` is not called under a pipeline; ``train_micro_step`` collects the step's
micro-batches and runs them as one ``train_batch`` on the last, and evaluation calls
``eval_batch`` per validation batch, so the trainer, hooks and checkpoints do not change.
"""

from __future__ import annotations

import glob
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch

from engine.weights import safe_load
from engine.errors import EngineError
from engine.model.precision import to_device
from engine.runplan.ds_config import pipeline_stages


def to_pipeline_module(network: torch.nn.Module, ds_config: Mapping[str, Any], loss_fn: Callable[..., Any]) -> Any:
    """Wrap ``network``'s layers in a ``deepspeed.pipe.PipelineModule`` with this run's stages.

    Each rank keeps only its stage's layers; layer ``i`` is registered as ``str(i)``, so
    checkpoint files hold ``layer_XX-model_states.pt`` per layer (see ``layer_key_map``).
    """
    from deepspeed.pipe import PipelineModule

    layers = list(network.to_layers())
    pipe = ds_config["pipeline"]
    stages = pipeline_stages(ds_config)
    if len(layers) < stages:
        raise EngineError(f"deepspeed.pipeline.stages = {stages}, but {type(network).__name__}.to_layers() "
                          f"gives {len(layers)} layers: each stage needs at least one")
    return PipelineModule(layers=layers, num_stages=stages, loss_fn=loss_fn,
                          partition_method=str(pipe.get("partition_method", "parameters")),
                          activation_checkpoint_interval=int(pipe.get("activation_checkpoint_interval", 0)))


def resolve_loss_fn(network: torch.nn.Module, bundle: Any) -> Callable[..., Any]:
    """``network.loss_fn`` or ``bundle.pipeline_loss``: what the last stage applies to (outputs, labels)."""
    loss_fn = getattr(network, "loss_fn", None) or getattr(bundle, "pipeline_loss", None)
    if loss_fn is None:
        raise EngineError(f"deepspeed.pipeline: {type(network).__name__} has no loss_fn(outputs, labels) and "
                          f"{type(bundle).__name__} no pipeline_loss(outputs, labels); the last stage needs one")
    return loss_fn


def layer_key_map(network: torch.nn.Module) -> Dict[str, str]:
    """Pipeline state-dict key (``"3.fc.weight"``) → the plain network's key (``"blocks.2.fc.weight"``).

    Export of a pipeline checkpoint uses it to give back a state dict that loads with
    ``strict=True`` into the unpipelined network. Layers that are not submodules of the
    network (plain functions) hold no weights and are skipped.
    """
    names = {id(module): name for name, module in network.named_modules()}
    mapping: Dict[str, str] = {}
    for index, layer in enumerate(network.to_layers()):
        if not isinstance(layer, torch.nn.Module) or id(layer) not in names:
            continue
        prefix = names[id(layer)]
        for key in layer.state_dict():
            mapping[f"{index}.{key}"] = f"{prefix}.{key}" if prefix else key
    return mapping


def pipeline_state_dict(engine_dir: str, key_map: Mapping[str, str]) -> Dict[str, torch.Tensor]:
    """The whole network's weights from one engine's pipeline checkpoint, under the plain network's names.

    A pipeline checkpoint keeps each layer in its own ``layer_XX-model_states.pt`` (written by
    the stage that owns it; ``mp_rank_*`` files hold no weights). ``key_map`` is
    ``layer_key_map(network)`` of a freshly built network; keys it lacks stay as they are.
    """
    files = sorted(glob.glob(os.path.join(engine_dir, "layer_*-model_states.pt")))
    if not files:
        raise EngineError(f"{engine_dir}: no layer_XX-model_states.pt files (not a pipeline checkpoint)")
    state: Dict[str, torch.Tensor] = {}
    for path in files:
        index = int(os.path.basename(path)[len("layer_"):].split("-")[0])
        for key, value in safe_load.load(path).items():
            state[key_map.get(f"{index}.{key}", f"{index}.{key}")] = value
    return state


def default_pipeline_inputs(data: Any) -> Tuple[Any, Any]:
    """``(inputs, labels)`` from a ``{"input", "label"}`` dict or an ``(inputs, labels)`` pair."""
    if isinstance(data, Mapping) and "input" in data and "label" in data:
        return data["input"], data["label"]
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise EngineError("deepspeed.pipeline: the model bundle needs pipeline_inputs(data) -> (inputs, labels) "
                      "for batches that are not {'input', 'label'} dicts or pairs")


class PipelineStep:
    """Turns the trainer's per-micro-batch calls into one ``train_batch`` per optimizer step."""

    def __init__(self, engine: Any, split: Callable[[Any], Tuple[Any, Any]], device: torch.device) -> None:
        self.engine = engine
        self.split = split
        self.device = device
        self.micro_batches = int(engine.gradient_accumulation_steps())
        self._pending: List[Tuple[Any, Any]] = []
        self._eval_shapes = False  # eval batches may differ in size: re-announce shapes around them

    def _prepare(self, data: Any) -> Tuple[Any, Any]:
        inputs, labels = self.split(data)
        dtype = next(self.engine.module.parameters()).dtype
        return _to(inputs, self.device, dtype), _to(labels, self.device, None)

    def train_micro(self, data: Any) -> Optional[Dict[str, torch.Tensor]]:
        """Queue one micro-batch; at the step's last, run the pipeline and return the mean loss."""
        self._pending.append(self._prepare(data))
        if len(self._pending) < self.micro_batches:
            return None
        batches, self._pending = self._pending, []
        if self._eval_shapes:
            self.engine.reset_activation_shape()
            self._eval_shapes = False
        loss = self.engine.train_batch(iter(batches))
        return {"loss": loss.detach().float().reshape(())}

    def eval_loss(self, data: Any) -> torch.Tensor:
        """The loss of one validation batch, through all stages (every rank gets it)."""
        self.engine.reset_activation_shape()
        self._eval_shapes = True
        loss = self.engine.eval_batch(iter([self._prepare(data)]), num_micro_batches=1)
        return loss.detach().float().reshape(())  # broadcast from the last stage as shape (1,)


def _to(value: Any, device: torch.device, dtype: Optional[torch.dtype]) -> Any:
    """Like ``precision.to_device``; a list becomes the tuple DeepSpeed's pipeline engine expects."""
    moved = to_device(value, device, dtype)
    return tuple(moved) if isinstance(moved, list) else moved
