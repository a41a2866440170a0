"""``BaseGanModel``: a generator and one or several discriminators, each its own DeepSpeed engine.

Why one engine per network: each has its own optimizer, LR schedule and clipping, and DeepSpeed
ties one optimizer to one engine. Two engines share one process safely only if D's
parameters do not require grad while G's loss runs through D (measured with DeepSpeed 0.19): otherwise
D's ZeRO hooks see gradients outside D's own backward ("Gradient computed twice for this
partition" at ZeRO-2, a bare AssertionError at ZeRO-3). ``dmodel_forward(..., for_generator=True)``
freezes them for exactly that span, and ``g_backward_step`` unfreezes them.

The user's ``run_step`` drives the steps (the trainer does not step GAN models)::

    def run_step(self, data, *, epoch=None, **kwargs):
        real = self.to_device(data["img"])
        fake = self.g_model(noise)
        d_loss = bce(self.dmodel_forward(real), 1) + bce(self.dmodel_forward(fake.detach()), 0)
        self.d_backward_step(d_loss)
        g_loss = bce(self.dmodel_forward(fake, for_generator=True), 1)
        self.g_backward_step(g_loss)
        return {"real_score": ...}          # optional extra scalars to log

The seed's form works too: implement ``dmodel_step(data, epoch, **kwargs)`` (D's loss: a
tensor, or a dict with one loss per discriminator name) and ``gmodel_step(data, epoch,
**kwargs)`` (G's loss) instead of ``run_step``; the inherited ``run_step`` then steps every
discriminator, then the generator every ``trainer.model.g_step`` steps (the seed's
``epoch % g_step == 0`` on its loop counter), with D frozen while G's loss runs through it.

Gradient accumulation: call each ``*_backward_step`` once per micro-batch; every engine
counts micro-batches and really steps at the same boundary. Under ``torch.no_grad()`` (the
trainer's default evaluation) the helpers record the losses without stepping.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Dict, Iterator, Mapping, Optional, Union

import torch

from engine.config.checks import discriminator_plan
from engine.errors import EngineError
from engine.events.step import StepResult
from engine.model.base_model import BaseModel, set_train_mode
from engine.model.build import build_network
from engine.model.engine_wrap import backward_step, wrap_network
from engine.model.tensor_parallel import check_network_specs
from engine.model.zero_init import construction_context
from engine.weights.pretrained import load_state
from engine.model.trainframework import load_optimizer_state
from engine.model.tensor_parallel import gathered_state_dict
from engine.runplan.plan import D_PREFIX  # checkpoint/export name of discriminator ``name``: discriminator.<name>
from engine.utils.signature import overrides


class BaseGanModel(BaseModel):
    """Generator (``g_model``) plus discriminators (``d_model``: name → engine; ``default`` for one dict).

    ``trainer.model.discriminator`` is one network dict or a list of ``dict(name=..., params=...)``;
    ``solver.discriminator`` one solver dict for all, or a list matched by name.
    """

    #: the key of the discriminator when ``trainer.model.discriminator`` is one dict (seed name)
    DEFAULT_DMODEL_NAME = "default"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        if self.item_weights is not None:
            logging.getLogger("engine").warning(
                f"{type(self).__name__}.num_items has no effect: a GAN's run_step steps each network itself, so "
                "its losses are not weighed by item counts")
            self.item_weights = None
        self.d_model: Dict[str, Any] = {}
        self.d_optimizer: Dict[str, Any] = {}
        self.d_lr_scheduler: Dict[str, Any] = {}
        self.d_ds_config: Dict[str, Dict[str, Any]] = {}
        self._d_clip: Dict[str, Any] = {}
        plan = discriminator_plan(cfg)
        if not plan:
            raise EngineError(f"{type(self).__name__} is a GAN model: set trainer.model.discriminator")
        for name, network_spec, solver, where in plan:
            ds_config = self.plan.ds_config(D_PREFIX + name)  # the run plan holds one DeepSpeed config per engine
            with construction_context(ds_config, cfg.DEEPSPEED.ZERO_INIT):  # ZeRO-3: partitioned as built
                network = self.create_discriminator(network_spec, name)
            check_network_specs(ds_config, network, f"trainer.model.discriminator[{name}]")
            wrapped = wrap_network(network, solver, ds_config, where=where, max_iter=self.planned_steps)
            self.d_model[name] = wrapped.engine
            self.d_optimizer[name] = wrapped.optimizer
            self.d_lr_scheduler[name] = wrapped.lr_scheduler
            self.d_ds_config[name] = ds_config
            self._d_clip[name] = solver["clip_gradients"]
        self._frozen = False
        self._thawed: list = []
        self._step_log: Dict[str, torch.Tensor] = {}
        self._g_stepped = False
        self._g_rests = False  # the seed form's G sits out this step (trainer.model.g_step)

    # ---- what users override -------------------------------------------------------------------
    def create_discriminator(self, params: Mapping[str, Any], name: str) -> torch.nn.Module:
        """Build discriminator ``name`` from its network spec (override for custom construction).

        A subclass that overrides the seed's ``create_d_model(params)`` instead gets that called.
        """
        if overrides(self, BaseGanModel, "create_d_model"):
            return self.create_d_model(params)
        where = "trainer.model.discriminator" if name == "default" else f"trainer.model.discriminator[{name}].params"
        return build_network(params, where=where)

    def create_d_model(self, params: Mapping[str, Any]) -> torch.nn.Module:
        """The seed's name of the discriminator builder (one argument: the network spec)."""
        return build_network(params, where="trainer.model.discriminator")

    @property
    def d_scheduler(self) -> Dict[str, Any]:
        """The seed's name of ``d_lr_scheduler``."""
        return self.d_lr_scheduler

    # ---- the seed's form: dmodel_step / gmodel_step --------------------------------------------
    def dmodel_step(self, data: Any, epoch: Any = None, **kwargs: Any) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
        """Seed form: the discriminators' loss for ``data`` (one tensor, or one per discriminator name)."""
        raise NotImplementedError(f"{type(self).__name__} must implement run_step (engine's form) or dmodel_step "
                                  "and gmodel_step (the seed's form)")

    def gmodel_step(self, data: Any, epoch: Any = None, **kwargs: Any) -> torch.Tensor:
        """Seed form: the generator's loss for ``data`` (its D calls run with D frozen)."""
        raise NotImplementedError(f"{type(self).__name__} must implement run_step (engine's form) or dmodel_step "
                                  "and gmodel_step (the seed's form)")

    def run_step(self, data: Any, *, epoch: Any = None, **kwargs: Any) -> None:
        """The seed's GAN step over ``dmodel_step`` / ``gmodel_step``; engine-form models override it."""
        self._dmodel_backward(self.dmodel_step(data, epoch, **kwargs))
        g_step = int(self.cfg.TRAINER.MODEL.G_STEP)
        if torch.is_grad_enabled() and epoch is not None and int(epoch) % g_step != 0:  # evaluation: every loss
            self._g_rests = True
            return
        with self.discriminators_frozen():
            self._gmodel_backward(self.gmodel_step(data, epoch, **kwargs))

    def _dmodel_backward(self, d_model_loss: Union[torch.Tensor, Mapping[str, torch.Tensor]], retain_graph: bool = False) -> None:
        """The seed's helper: backward and step each discriminator with its own loss."""
        losses = d_model_loss if isinstance(d_model_loss, Mapping) else {self._name(None): d_model_loss}
        missing = sorted(set(self.d_model) - set(losses))
        if missing:
            raise EngineError(f"{type(self).__name__}.dmodel_step: no loss for discriminator(s) {', '.join(missing)}")
        for name, loss in losses.items():
            self.d_backward_step(loss, name)

    def _gmodel_backward(self, loss: torch.Tensor, retain_graph: bool = False) -> None:
        """The seed's helper: backward and step the generator."""
        self.g_backward_step(loss)

    # ---- helpers for run_step ------------------------------------------------------------------
    def _name(self, name: Optional[str]) -> str:
        if name is None:
            if len(self.d_model) == 1:
                return next(iter(self.d_model))
            raise EngineError(f"{type(self).__name__}: several discriminators ({', '.join(self.d_model)}); pass name=")
        if name not in self.d_model:
            raise EngineError(f"{type(self).__name__}: no discriminator {name!r}; have {', '.join(self.d_model)}")
        return name

    def dmodel_forward(self, *inputs: Any, name: Optional[str] = None, for_generator: bool = False, **kwargs: Any) -> Any:
        """Run discriminator ``name`` (the only one when None).

        The seed's form is one dict argument, ``{d_name: {arg: tensor}}`` (or ``{arg: tensor}``
        for the only discriminator), giving keyword arguments per discriminator and returning
        ``{d_name: output}``.

        Args:
            for_generator: the output feeds the generator's loss. Every discriminator's
                parameters stop requiring grad until ``g_backward_step``, so G's backward
                passes through D without touching D's gradients (which DeepSpeed forbids).
        """
        if len(inputs) == 1 and isinstance(inputs[0], Mapping) and name is None and not kwargs:
            return self._seed_dmodel_forward(inputs[0], for_generator)
        engine = self.d_model[self._name(name)]
        if for_generator and torch.is_grad_enabled():
            self._freeze_discriminators(True)
        if self._frozen and engine.zero_optimization_stage() == 0:
            # ZeRO-0: the engine hooks its outputs for its own backward and refuses any other
            # ("Direct calls to tensor.backward() are not supported"), so G's backward could not
            # pass through D. Frozen, D needs nothing from its engine: run the module itself.
            return engine.module(*inputs, **kwargs)
        return engine(*inputs, **kwargs)

    def _seed_dmodel_forward(self, inputs: Mapping[str, Any], for_generator: bool) -> Dict[str, Any]:
        if all(isinstance(v, torch.Tensor) for v in inputs.values()):  # keyword inputs of the only discriminator
            inputs = {self._name(None): inputs}
        unknown = sorted(set(inputs) - set(self.d_model))
        if unknown:
            raise EngineError(f"{type(self).__name__}.dmodel_forward: no discriminator {', '.join(unknown)}; "
                              f"have {', '.join(self.d_model)}")
        return {name: self.dmodel_forward(name=name, for_generator=for_generator, **dict(kwargs))
                for name, kwargs in inputs.items()}

    def d_backward_step(self, loss: torch.Tensor, name: Optional[str] = None) -> None:
        """Backward D's loss and step D's engine (a real step only at the accumulation boundary)."""
        name = self._name(name)
        self._log(f"d_loss/{name}" if len(self.d_model) > 1 else "d_loss", loss)
        if not torch.is_grad_enabled():
            return  # evaluation: nothing to step
        if self._frozen:
            raise EngineError(f"d_backward_step({name!r}) while the discriminators are frozen for the generator: "
                              "call g_backward_step first, or run D's forward without for_generator=True")
        self.note_step(backward_step(self.d_model[name], loss, self._d_clip[name]))

    def g_backward_step(self, loss: torch.Tensor) -> None:
        """Backward G's loss, step G's engine, update the EMA at the boundary; unfreeze the discriminators."""
        self._log("g_loss", loss)
        if not torch.is_grad_enabled():
            return
        try:
            outcome = backward_step(self.g_model, loss, self._clip)
        finally:
            self._freeze_discriminators(False)
        self.note_step(outcome)
        if outcome.boundary and not outcome.skipped and self.ema is not None:
            self.ema.update()
        self._g_stepped = True

    @contextlib.contextmanager
    def discriminators_frozen(self) -> Iterator[None]:
        """A block where D's parameters do not require grad (e.g. G losses through several D calls)."""
        self._freeze_discriminators(True)
        try:
            yield
        finally:
            self._freeze_discriminators(False)

    def _freeze_discriminators(self, frozen: bool) -> None:
        """Freeze (or unfreeze) the parameters that train; ones the user froze stay frozen."""
        if frozen == self._frozen:
            return
        if frozen:
            self._thawed = [p for engine in self.d_model.values() for p in engine.module.parameters() if p.requires_grad]
        for param in self._thawed:
            param.requires_grad_(not frozen)
        self._frozen = frozen

    def _log(self, key: str, loss: torch.Tensor) -> None:
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise EngineError(f"{type(self).__name__}: {key.split('/')[0]} must be a scalar tensor, got {shape}")
        self._step_log[key] = loss.detach()

    # ---- what the trainer calls ----------------------------------------------------------------
    def train_micro_step(self, data: Any, *, epoch: Any = None) -> StepResult:
        """Run the user's ``run_step``, which steps every network through the helpers; return its outcome.

        ``skipped``: an engine's update was dropped as non-finite in this micro-step;
        ``boundary``: the generator's accumulation window ended (every engine shares it).
        """
        self._step_log, self._g_stepped, self._g_rests = {}, False, False
        self.last_step_skipped = False
        self.last_epoch = epoch
        boundary = self.g_model.is_gradient_accumulation_boundary()  # read before g_backward_step advances it
        output = self.run_step(data, epoch=epoch)
        if not self._g_stepped and not self._g_rests:
            self._freeze_discriminators(False)
            raise EngineError(f"{type(self).__name__}.run_step never called g_backward_step(loss): in a GAN model "
                              "run_step steps the networks itself (see engine.model.gan_model)")
        return StepResult(self._logged_scalars(output), skipped=self.last_step_skipped, boundary=boundary)

    def eval_step(self, data: Any) -> Dict[str, torch.Tensor]:
        """One evaluation batch: the losses ``run_step`` records, nothing stepped.

        The trainer evaluates under ``torch.no_grad``, where the backward helpers only record.
        ``loss`` is ``run_step``'s own if it returned one, else the generator's (``g_loss``).
        """
        self._step_log, self._g_stepped, self._g_rests = {}, False, False
        scalars = self._logged_scalars(self.run_step(data, epoch=self.last_epoch))
        if "loss" not in scalars:
            if "g_loss" not in scalars:
                raise EngineError(f"{type(self).__name__}: evaluation ran run_step but it recorded no generator loss "
                                  "(g_backward_step) and returned no 'loss'")
            scalars["loss"] = scalars["g_loss"]
        return scalars

    def _logged_scalars(self, output: Any) -> Dict[str, torch.Tensor]:
        """What the helpers recorded, plus what ``run_step`` returned (None, a loss tensor or a dict)."""
        scalars = dict(self._step_log)
        if isinstance(output, Mapping):
            scalars.update({k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in output.items()})
        elif isinstance(output, torch.Tensor):
            scalars["loss"] = output.detach()
        elif output is not None:
            raise EngineError(f"{type(self).__name__}.run_step returned {type(output).__name__}; "
                              "a GAN run_step returns None, a tensor or a dict of scalars to log")
        return scalars

    def enable_train(self) -> None:
        super().enable_train()
        for engine in self.d_model.values():
            set_train_mode(engine, True)

    def disable_train(self) -> None:
        super().disable_train()
        for engine in self.d_model.values():
            set_train_mode(engine, False)

    def get_addition_state_dict(self) -> Dict[str, Any]:
        """The seed's layout: the generator's, plus ``d_model_<name>`` / ``d_optimizer_<name>`` / ``d_scheduler_<name>``.

        Discriminator weights are gathered whole (a collective); optimizer states are this rank's.
        """
        state = super().get_addition_state_dict()
        for name, engine in self.d_model.items():
            scheduler = self.d_lr_scheduler[name]
            state[f"d_model_{name}"] = gathered_state_dict(engine)
            state[f"d_optimizer_{name}"] = self.d_optimizer[name].state_dict()
            state[f"d_scheduler_{name}"] = scheduler.state_dict() if scheduler is not None else {}
        return state

    def load_addition_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        super().load_addition_state_dict(state_dict)
        for name, engine in self.d_model.items():
            load_state(engine, dict(state_dict[f"d_model_{name}"]), source=f"d_model_{name}")
            load_optimizer_state(self.d_optimizer[name], state_dict[f"d_optimizer_{name}"], f"d_optimizer_{name}")
            if self.d_lr_scheduler[name] is not None and state_dict.get(f"d_scheduler_{name}"):
                self.d_lr_scheduler[name].load_state_dict(state_dict[f"d_scheduler_{name}"])

    @property
    def engines(self) -> Dict[str, Any]:
        """Generator and every discriminator, saved together under one checkpoint tag."""
        return {"generator": self.g_model, **{D_PREFIX + name: engine for name, engine in self.d_model.items()}}
