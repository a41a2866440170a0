"""The run plan as model bundles and the trainer find it: the active one, or one for this live process.

Under ``BaseScheduler`` a plan is always active (``engine.runplan.plan.use_run_plan``). A
model bundle or trainer built by hand (a notebook, a benchmark calling ``build_trainer``)
gets a plan built the same way for the process it runs in, so both paths read one object.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

from engine import comm
from engine.config.checks import discriminator_plan
from engine.model.build import BUILD_NETWORK_REGISTRY
from engine.launch import select_device
from engine.runplan.plan import D_PREFIX, GENERATOR, RunPlan, active_run_plan, build_run_plan


def declared_layer_specs(cfg: Mapping[str, Any]) -> Dict[str, List[Mapping[str, Any]]]:
    """Engine name → the ``autotp_layer_specs`` its registered network class declares (tensor parallel)."""
    networks = [(GENERATOR, cfg["trainer"]["model"]["generator"])]
    networks += [(D_PREFIX + name, spec) for name, spec, _, _ in discriminator_plan(cfg)]
    found = {}
    for engine, spec in networks:
        name = (spec or {}).get("name")
        cls = BUILD_NETWORK_REGISTRY.get(name) if name and name in BUILD_NETWORK_REGISTRY else None
        specs = getattr(cls, "autotp_layer_specs", None)
        if specs:
            found[engine] = [dict(s) for s in specs]
    return found


def current_plan(cfg: Any) -> RunPlan:
    """The active run plan, or (outside a scheduler or trainer) one for this process and its process group."""
    plan = active_run_plan()
    if plan is not None:
        return plan
    return build_run_plan(cfg, rank=comm.get_rank(), world_size=comm.get_world_size(),
                          device=select_device(cfg.TRAINER.DEVICE), layer_specs=declared_layer_specs(cfg))
