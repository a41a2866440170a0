"""The seed's trainer / model / logging surface, piece by piece (the whole project: tests/e2e/test_seed_project.py)."""

from __future__ import annotations

import importlib
import logging
from types import SimpleNamespace

import pytest
import torch

from engine.config import build_cfg
from engine.errors import EngineError
from engine.trainer.hooks import SeedCallbacksHook, register_hooks
from engine.trainer.trainer import BaseTrainer
from engine.utils.signature import positional_capacity

# every name the seed's package __init__s export that engine keeps, by package
SEED_EXPORTS = {
    "engine": ["TORCH_VERSION"],
    "engine.model": ["BaseModel", "BaseGanModel", "BUILD_MODEL_REGISTRY", "BUILD_NETWORK_REGISTRY", "EMA"],
    "engine.trainer": ["BaseTrainer", "BUILD_TRAINER_REGISTRY"],
    "engine.data": ["BUILD_DATASET_REGISTRY", "EngineDataSet"],
    "engine.schedule": ["BaseScheduler"],
    "engine.loss": ["LossCompose", "LossKeyCompose", "LOSS_ARCH_REGISTRY", "SSIMLoss", "L1Loss", "NLLLoss", "MSELoss",
                    "BCELoss", "BCEWithLogitsLoss", "SmoothL1Loss", "SoftMarginLoss", "CrossEntropyLoss",
                    "MultiLabelSoftMarginLoss", "TripletMarginLoss", "TripletMarginWithDistanceLoss", "VggLoss",
                    "BinaryDiceLoss", "GeneralizedDiceLoss", "IOULoss", "GeneralizedCELoss"],
    "engine.transforms": ["TransformCompose", "BUILD_TRANSFORMER_REGISTRY", "MosaicTransform", "Pad32", "Resize",
                          "RandomAffine", "RandomFlip", "RandomResize", "RandomCrop", "BasicColorTransform",
                          "RandomGaussianBlur", "RandomBrightnessContrast", "RandomToneCurve", "RandomBrightness",
                          "RandomContrast", "RandomSaturation", "RandomHue", "RandomGamma", "RandomSharpen", "ToGray",
                          "Normalize", "RandomCLAHE", "RandomCompress", "RandomColorJitter"],
    "engine.slover": ["LRMultiplierScheduler", "WarmupCosineLR", "WarmupMultiStepLR", "WarmupPolynomialDecay"],
}


@pytest.mark.parametrize("package", sorted(SEED_EXPORTS))
def test_the_seeds_package_level_names_import_from_the_same_place(package):
    module = importlib.import_module(package)
    missing = [name for name in SEED_EXPORTS[package] if not hasattr(module, name)]
    assert not missing, f"{package} lacks {missing}"


def test_package_names_are_the_same_objects_as_the_module_ones():
    from engine.model import BUILD_NETWORK_REGISTRY, BaseModel
    from engine.model.base_model import BaseModel as module_model
    from engine.model.build import BUILD_NETWORK_REGISTRY as module_registry

    assert BaseModel is module_model and BUILD_NETWORK_REGISTRY is module_registry
    import engine

    assert engine.TORCH_VERSION == tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])


def test_every_registered_loss_imports_from_engine_loss_by_its_name():
    import engine.loss
    from engine.loss import LOSS_ARCH_REGISTRY

    assert {name: getattr(engine.loss, name, None) for name, _ in LOSS_ARCH_REGISTRY} == dict(LOSS_ARCH_REGISTRY)


def test_build_network_takes_one_argument_as_in_the_seed():
    from engine.model import BUILD_NETWORK_REGISTRY, build_network

    if "SeedSurfaceNet" not in BUILD_NETWORK_REGISTRY:
        @BUILD_NETWORK_REGISTRY.register()
        class SeedSurfaceNet(torch.nn.Linear):
            def __init__(self, width=3):
                super().__init__(width, 1)

    assert build_network({"name": "SeedSurfaceNet", "width": 5}).in_features == 5
    with pytest.raises(Exception, match="trainer.model.generator"):  # the key path of the spec it builds
        build_network({"name": "SeedSurfaceNet", "widht": 5})


def test_positional_capacity_tells_the_seed_form_from_engines():
    class Seed:
        def iterate_after(self, epoch): ...

    class Engine:
        def iterate_after(self, epoch, loss_dict): ...

    class Star:
        def iterate_after(self, *args): ...

    assert positional_capacity(Seed().iterate_after) == 1
    assert positional_capacity(Engine().iterate_after) == 2
    assert positional_capacity(Star().iterate_after) > 2
    assert positional_capacity(BaseTrainer.iterate_after.__get__(object())) == 2  # the base: engine's form


# ---- callbacks: forms and cadence ----------------------------------------------------------------
class LoopTrainer:
    """What SeedCallbacksHook reads of a trainer, with the loop counters of BaseTrainer."""

    loop_counter = BaseTrainer.loop_counter
    ends_loop_turn = BaseTrainer.ends_loop_turn
    epoch = BaseTrainer.epoch

    def __init__(self, epoch_mode, steps_per_epoch=3):
        self.epoch_mode, self.steps_per_epoch, self.iter = epoch_mode, steps_per_epoch, 0
        self.step_outputs = {"loss": torch.tensor(1.0)}
        self.calls = []

    def before_loop(self): ...

    def after_loop(self): ...


class SeedFormTrainer(LoopTrainer):
    def iterate_after(self, epoch):
        self.calls.append(epoch)


class EngineFormTrainer(LoopTrainer):
    def iterate_after(self, epoch, loss_dict):
        self.calls.append((epoch, float(loss_dict["loss"])))


def run_steps(trainer, steps):
    hook = register_hooks(trainer, [SeedCallbacksHook()])[0]
    hook.before_train()
    for trainer.iter in range(steps):
        hook.after_step()
    return trainer.calls


def test_one_argument_iterate_after_gets_the_step_every_step_in_iteration_mode():
    assert run_steps(SeedFormTrainer(epoch_mode=False), 5) == [0, 1, 2, 3, 4]


def test_one_argument_iterate_after_runs_once_per_epoch_in_epoch_mode():
    assert run_steps(SeedFormTrainer(epoch_mode=True, steps_per_epoch=3), 9) == [0, 1, 2]


def test_two_argument_iterate_after_runs_every_step_with_the_loss_dict():
    assert run_steps(EngineFormTrainer(epoch_mode=False), 3) == [(0, 1.0), (1, 1.0), (2, 1.0)]
    # epoch mode: still every step (per-step work), with the epoch as the seed's loop counter
    assert run_steps(EngineFormTrainer(epoch_mode=True, steps_per_epoch=2), 4) == [(0, 1.0), (0, 1.0), (1, 1.0), (1, 1.0)]


# ---- construction: set_collate_fn and create_dataset forms ---------------------------------------
def seed_collate(batch): ...


def engine_collate(batch): ...


def bare(cls):
    """A trainer object without __init__ (which would start DeepSpeed): only the construction helpers run."""
    return cls.__new__(cls)


def test_seed_set_collate_fn_sets_attributes_and_returns_nothing():
    class SeedTrainer(BaseTrainer):
        def set_collate_fn(self, cfg):
            self.collate_train_fn = seed_collate
            self.collate_valid_fn = engine_collate

    trainer = bare(SeedTrainer)
    trainer._choose_collate_fns(None)
    assert (trainer.collate_train_fn, trainer.collate_valid_fn) == (seed_collate, engine_collate)


def test_engine_set_collate_fn_return_value_serves_every_loader():
    class EngineTrainer(BaseTrainer):
        def set_collate_fn(self, cfg):
            return engine_collate

    trainer = bare(EngineTrainer)
    trainer._choose_collate_fns(None)
    assert trainer.collate_train_fn is engine_collate and trainer.collate_valid_fn is engine_collate
    plain = bare(BaseTrainer)
    plain._choose_collate_fns(None)
    assert plain.collate_train_fn is None and plain.collate_valid_fn is None


@pytest.fixture(scope="module")
def dataset_cfg():
    from engine.data import BUILD_DATASET_REGISTRY, EngineDataSet

    if "SeedSurfaceSet" not in BUILD_DATASET_REGISTRY:
        @BUILD_DATASET_REGISTRY.register()
        class SeedSurfaceSet(EngineDataSet):
            def __init__(self, size, transformer=None):
                super().__init__(transformer)
                self.size = size

            def __len__(self):
                return self.size

    def make(**data):
        return build_cfg({"dataloader": data, "trainer": {"model": {"name": "M", "generator": {"name": "N"}}}})

    return make


def test_test_set_falls_back_to_the_validation_set(dataset_cfg):
    cfg = dataset_cfg(train_data_set={"name": "SeedSurfaceSet", "size": 4}, val_data_set={"name": "SeedSurfaceSet", "size": 2})
    train, valid, test = bare(BaseTrainer)._create_datasets(cfg)
    assert (len(train), len(valid)) == (4, 2) and test is valid
    cfg = dataset_cfg(train_data_set={"name": "SeedSurfaceSet", "size": 4},
                      test_data_set={"name": "SeedSurfaceSet", "size": 3})
    train, valid, test = bare(BaseTrainer)._create_datasets(cfg)
    assert valid is None and len(test) == 3


def test_seed_create_dataset_returns_the_triple_and_super_gives_it(dataset_cfg):
    class SeedTrainer(BaseTrainer):
        def create_dataset(self, cfg):
            train, valid, test = super().create_dataset(cfg)
            self.built = (len(train), len(valid), len(test))
            return train, valid, test

    cfg = dataset_cfg(train_data_set={"name": "SeedSurfaceSet", "size": 5}, val_data_set={"name": "SeedSurfaceSet", "size": 2})
    trainer = bare(SeedTrainer)
    trainer._create_datasets(cfg)
    assert trainer.built == (5, 2, 2)

    class Broken(BaseTrainer):
        def create_dataset(self, cfg):
            return super().create_dataset(cfg)[0]

    with pytest.raises(EngineError, match=r"must return \(train, valid, test\)"):
        bare(Broken)._create_datasets(cfg)


def test_engine_create_dataset_is_called_per_split_with_its_key_path(dataset_cfg):
    class EngineTrainer(BaseTrainer):
        def create_dataset(self, spec, where):
            self.paths = getattr(self, "paths", []) + [where]
            return super().create_dataset(spec, where)

    cfg = dataset_cfg(train_data_set={"name": "SeedSurfaceSet", "size": 5}, val_data_set={"name": "SeedSurfaceSet", "size": 2},
                      test_data_set={"name": "SeedSurfaceSet", "size": 1})
    trainer = bare(EngineTrainer)
    trainer._create_datasets(cfg)
    assert trainer.paths == ["dataloader.train_data_set", "dataloader.val_data_set", "dataloader.test_data_set"]


# ---- trainer.checkpoint ------------------------------------------------------------------------------
class FakeModel:
    """A model bundle stand-in: the seed members check that ``save`` is given the bound one."""


def checkpoint_of(period=4, max_iter=10, epoch_mode=False, monkeypatch=None):
    """A Checkpointer bound to a stand-in trainer; with ``monkeypatch`` its saves only record the step."""
    from engine.checkpoint import checkpointer as module

    trainer = SimpleNamespace(model=FakeModel(), iter=0, saved=[])
    if monkeypatch is not None:  # no engines here: the save sequence itself is tested in test_checkpointer.py
        monkeypatch.setattr(module, "save_checkpoint", lambda site, model, state, step: trainer.saved.append(step))
    checkpointer = module.Checkpointer("/tmp/out", 2, check_period=period, max_iter=3 if epoch_mode else max_iter)
    checkpointer.bind(trainer.model, lambda: {"iteration": trainer.iter + 1})
    return checkpointer, trainer


def test_checkpoint_members_and_the_seeds_cadence():
    checkpoint, trainer = checkpoint_of()
    assert (checkpoint.check_period, checkpoint.max_keep, checkpoint.save_dir) == (4, 2, "/tmp/out/checkpoints")
    due = [step for step in range(10) if checkpoint.is_due(step)]
    assert due == [3, 7, 9]  # every 4th loop turn and the last
    assert checkpoint_of(period=0)[0].is_due(3) is False and checkpoint_of(period=0)[0].is_due(9) is True
    assert checkpoint_of(epoch_mode=True)[0].max_iter == 3  # the seed's loop counts epochs there


def test_trainer_builds_the_seed_members_from_the_config(tmp_path):
    """``BaseTrainer.build_checkpointer`` reads the seed's values from ``solver`` and the plan (epoch mode)."""
    from engine.runplan.plan import build_run_plan
    from engine.trainer.trainer import BaseTrainer

    cfg = build_cfg({"output_dir": str(tmp_path), "solver": {"checkpoint_period": 4, "max_keep": 2, "max_iter": 10,
                                                            "max_epoch": 3},
                     "dataloader": {"train_data_set": {"name": "D"}},
                     "trainer": {"model": {"name": "M", "generator": {"name": "N"}}}})
    for epoch_mode, expected in ((False, 10), (True, 3)):
        trainer = SimpleNamespace(cfg=cfg, epoch_mode=epoch_mode, max_iter=10, model=FakeModel(), state_dict=dict,
                                  plan=build_run_plan(cfg, rank=0, world_size=1, device="cpu"))
        checkpoint = BaseTrainer.build_checkpointer(trainer)
        assert (checkpoint.check_period, checkpoint.max_keep, checkpoint.max_iter) == (4, 2, expected)
        assert checkpoint.save_dir == str(tmp_path / "checkpoints") and checkpoint.writer is None


def test_checkpoint_save_delegates_to_the_hook_at_the_trainers_position(monkeypatch):
    checkpoint, trainer = checkpoint_of(monkeypatch=monkeypatch)
    for trainer.iter in range(10):
        checkpoint.save(trainer.model, trainer.iter)
    assert trainer.saved == [4, 8, 10]  # tags iter_4, iter_8, iter_10
    with pytest.raises(EngineError, match="the trainer's own model bundle"):
        checkpoint.save(object(), 3)


def test_hook_save_once_writes_a_step_once(monkeypatch):
    from engine.checkpoint.hook import CheckpointHook

    checkpoint, trainer = checkpoint_of(monkeypatch=monkeypatch)
    hook = CheckpointHook(checkpoint, period=2)
    hook.trainer = SimpleNamespace(iter=1, max_iter=4, model=trainer.model, state_dict=dict)
    checkpoint.save_once(trainer.model, {}, 2)  # e.g. trainer.checkpoint.save from iterate_after
    hook.after_step()  # the hook's own save of the same step
    hook.trainer.iter = 3
    hook.after_step()
    assert trainer.saved == [2, 4]


# ---- logging ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rank,file_name", [(0, "seg.log"), (1, "seg.rank1.log")])
def test_output_log_name_logger_is_routed_like_engines(tmp_path, rank, file_name, capsys):
    from engine.log.logger import setup_logger

    user = logging.getLogger("seg")
    saved = (list(user.handlers), user.propagate, user.level)
    try:
        setup_logger(str(tmp_path), "seg", rank=rank)
        user.info("from the user's logger")
        logging.getLogger("engine").info("from engine")
        user.warning("a user warning")
        for handler in user.handlers:
            handler.flush()
        text = (tmp_path / file_name).read_text()
        assert "seg INFO] from the user's logger" in text and "engine INFO] from engine" in text
        assert text.index("from the user's logger") < text.index("from engine")  # one file, in order
        out = capsys.readouterr().out
        assert ("from the user's logger" in out) is (rank == 0)  # ranks > 0: warnings only on the console
        assert "a user warning" in out
    finally:
        for handler in list(user.handlers):
            user.removeHandler(handler)
            handler.close()
        user.handlers[:], user.propagate, user.level = saved[0], saved[1], saved[2]
