"""The documented examples of the config reference: a config fragment per claim, and its effect.

Each section of the generated reference (``engine.config.reference``) shows these fragments
with what they do, and ``tests/unit/test_config_reference.py`` loads every one through the
config check and the run plan, as ``engine plan`` does, and asserts exactly the effect shown
(or the refusal, with the words of the error). So a row cannot call a working feature missing,
or a refused setting accepted, without a test failing: the reference is checked against what
the code does, not only against itself.

Plain data, like the rest of ``engine.config``: nothing here imports torch or DeepSpeed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple

#: the project every example is merged over (as its ``_base_``): the registry names a run needs
PROJECT_BASE = '''trainer = dict(model=dict(name="MyModel", generator=dict(name="MyNetwork")))
dataloader = dict(train_data_set=dict(name="MyDataset"))
'''


@dataclass(frozen=True)
class Example:
    """One documented config fragment and what it does.

    Attributes:
        shows: the key paths of the rows it illustrates (``deepspeed.pipeline`` for a DeepSpeed key).
        source: Python config lines (top-level variables), merged over ``PROJECT_BASE``.
        effect: (path, value) pairs the run shows: ``plan.<key>`` is the run plan as
            ``engine plan --json`` prints it under ``"plan"`` (and ``plan.json`` holds),
            ``cfg.<key>`` the resolved config (``output_dir/config.yaml``).
        refused: words of the one-line error the config check gives instead; ``effect`` is then empty.
        world_size: processes of the planned run.
        device: ``"cpu"`` or ``"cuda"``.
    """

    shows: Tuple[str, ...]
    source: str
    effect: Tuple[Tuple[str, Any], ...] = ()
    refused: str = ""
    world_size: int = 1
    device: str = "cpu"


#: reference section (its key prefix; "" for the top level, "deepspeed keys" for the DeepSpeed keys
#: passed through) → its examples
EXAMPLES: Dict[str, Tuple[Example, ...]] = {
    "": (
        Example(("seed", "output_dir"), 'seed = 7\noutput_dir = "./output/exp1"\n',
                effect=(("cfg.seed", 7), ("cfg.output_dir", "./output/exp1"))),
    ),
    "dataloader": (
        Example(("dataloader",), "dataloader = dict(num_workers=2, crop_size=512)\n",
                effect=(("cfg.dataloader.num_workers", 2), ("cfg.dataloader.crop_size", 512))),
        Example(("dataloader",), "dataloader = dict(num_worker=2)\n", refused="dataloader.num_worker: unknown key. Did you mean 'num_workers'?"),
    ),
    "trainer": (
        Example(("trainer.enable_epoch_method",), "trainer = dict(enable_epoch_method=True)\nsolver = dict(max_epoch=3)\n",
                effect=(("plan.batch.epoch_mode", True), ("plan.batch.max_epoch", 3))),
        Example(("trainer.model.name",), 'trainer = dict(model=dict(name=""))\n', refused="trainer.model.name: required"),
        Example(("trainer.loss",), 'trainer = dict(loss=dict(cls=[dict(name="CrossEntropyLoss")]))\n',
                effect=(("cfg.trainer.model.loss.cls.0.name", "CrossEntropyLoss"),)),
        Example(("trainer.loss",), 'trainer = dict(loss=dict(cls=[dict(name="L1Loss")]), '
                'model=dict(loss=dict(cls=[dict(name="MSELoss")])))\n', refused="trainer.loss = {'cls': [{'name': 'L1Loss'}]} conflicts with trainer.model.loss"),
        Example(("trainer.model.ema",), "trainer = dict(model=dict(ema=dict(enable=True, decay_rate=0.99)))\n",
                effect=(("cfg.solver.ema.enabled", True), ("cfg.solver.ema.decay_rate", 0.99))),
        Example(("trainer.model.ema",), "trainer = dict(model=dict(ema=dict(decay_rate=0.99)))\n"
                "solver = dict(ema=dict(decay_rate=0.9))\n", refused="trainer.model.ema.decay_rate = 0.99 conflicts with solver.ema.decay_rate = 0.9"),
        Example(("trainer.model.discriminator",), 'trainer = dict(model=dict(discriminator=[\n'
                '    dict(name="d", params=dict(name="MyD")), dict(name="d", params=dict(name="MyD"))]))\n',
                refused="discriminator names must be unique"),
    ),
    "solver": (
        Example(("solver.train_per_batch", "solver.gradient_accumulation_batch"),
                "solver = dict(train_per_batch=32, gradient_accumulation_batch=2)\n", world_size=4,
                effect=(("plan.batch.micro_batch", 16), ("plan.batch.accumulation", 2), ("plan.batch.global_batch", 128),
                        ("plan.engines.generator.train_batch_size", 128))),
        Example(("solver.gradient_accumulation_batch",), "solver = dict(train_per_batch=30, gradient_accumulation_batch=4)\n",
                refused="is not divisible by solver.gradient_accumulation_batch"),
        Example(("solver.generator.clip_gradients.clip_value",),
                "solver = dict(generator=dict(clip_gradients=dict(enabled=True, clip_value=5.0)))\n",
                effect=(("plan.engines.generator.gradient_clipping", 5.0),)),
        Example(("solver.generator.clip_gradients.norm_type",),
                "solver = dict(generator=dict(clip_gradients=dict(enabled=True, norm_type=1.0)))\n",
                refused="DeepSpeed clips the 2-norm only"),
        Example(("solver.generator.optimizer.type",), 'solver = dict(generator=dict(optimizer=dict(type="SGD", '
                'params=dict(lr=0.1, momentum=0.9))))\ndeepspeed = dict(config="zero2")\n',
                effect=(("plan.engines.generator.zero_allow_untested_optimizer", True), ("plan.zero_stage", 2))),
        Example(("solver.test_per_batch",), "solver = dict(test_per_batch=64)\n", effect=(("cfg.solver.test_per_batch", 64),)),
        Example(("solver.spike.enabled", "solver.spike.window"), "solver = dict(spike=dict(enabled=True, window=50))\n",
                effect=(("cfg.solver.spike.window", 50), ("cfg.solver.spike.warmup", 20), ("cfg.solver.spike.z", 6.0))),
        Example(("solver.spike.warmup",), "solver = dict(spike=dict(enabled=True, window=10, warmup=20))\n",
                refused="solver.spike.warmup = 20 is larger than solver.spike.window = 10"),
        Example(("solver.spike.z",), "solver = dict(spike=dict(enabled=True, z=0))\n",
                refused="solver.spike.z = 0: expected a threshold above 0"),
    ),
    "deepspeed": (
        Example(("deepspeed.config",), 'deepspeed = dict(config="zero3_offload")\n',
                effect=(("plan.zero_stage", 3), ("plan.offload_optimizer", "cpu"), ("plan.offload_param", "cpu"))),
        Example(("deepspeed.config",), 'deepspeed = dict(config="bf16")\n',
                effect=(("plan.precision", "bf16"), ("plan.compute_dtype", "bfloat16"), ("plan.zero_stage", 2))),
        Example(("deepspeed.config",), 'deepspeed = dict(config="zero5")\n', refused="deepspeed.config: 'zero5' is neither a file nor a bundled template"),
    ),
    "deepspeed keys": (
        Example(("deepspeed.pipeline",), 'deepspeed = dict(config="zero1", pipeline=dict(stages=2))\n', world_size=4,
                effect=(("plan.layout.pipeline_stages", 2), ("plan.layout.data_parallel_size", 2),
                        ("plan.batch.global_batch", 16))),
        Example(("deepspeed.pipeline",), 'deepspeed = dict(config="zero2", pipeline=dict(stages=2))\n', world_size=2,
                refused="DeepSpeed runs pipelines with ZeRO 0-1 only"),
        Example(("deepspeed.pipeline",), "deepspeed = dict(pipeline=dict(stages=3))\n", world_size=4,
                refused="does not divide the world size 4"),
        Example(("deepspeed.pipeline",), "deepspeed = dict(pipeline=dict(stages=2, micro_batches=4))\n"
                "solver = dict(gradient_accumulation_batch=2)\n", world_size=2,
                refused="deepspeed.pipeline.micro_batches = 4 conflicts with solver.gradient_accumulation_batch = 2"),
        Example(("deepspeed.tensor_parallel",), 'deepspeed = dict(config="zero3", tensor_parallel=dict(autotp_size=2))\n',
                world_size=4, effect=(("plan.layout.tensor_parallel_size", 2), ("plan.layout.data_parallel_size", 2),
                                      ("plan.batch.global_batch", 16))),
        Example(("deepspeed.tensor_parallel",), "deepspeed = dict(tensor_parallel=dict(autotp_size=2))\n",
                refused="does not divide the world size 1"),
        Example(("deepspeed.tensor_parallel",), "deepspeed = dict(pipeline=dict(stages=2), tensor_parallel=dict(autotp_size=2))\n",
                world_size=4, refused="engine runs one of them at a time"),
        Example(("deepspeed.fp16",), "deepspeed = dict(fp16=dict(enabled=True))\n", refused="does not support fp16"),
        Example(("deepspeed.fp16",), "deepspeed = dict(fp16=dict(enabled=True))\n", device="cuda",
                effect=(("plan.precision", "fp16"), ("plan.compute_dtype", "float16"))),
        Example(("deepspeed.train_batch_size",), "deepspeed = dict(train_batch_size=64)\n", world_size=2,
                refused="deepspeed.train_batch_size = 64 conflicts with"),
        Example(("deepspeed.train_batch_size",), 'deepspeed = dict(train_batch_size="auto")\n', world_size=2,
                effect=(("plan.engines.generator.train_batch_size", 16),)),
        Example(("deepspeed.train_micro_batch_size_per_gpu", "deepspeed.gradient_accumulation_steps"),
                "deepspeed = dict(train_micro_batch_size_per_gpu=4, gradient_accumulation_steps=2)\n",
                effect=(("cfg.solver.train_per_batch", 8), ("cfg.solver.gradient_accumulation_batch", 2))),
        Example(("deepspeed.train_micro_batch_size_per_gpu",), "deepspeed = dict(train_micro_batch_size_per_gpu=4)\n"
                "solver = dict(train_per_batch=16)\n", refused="deepspeed.train_micro_batch_size_per_gpu = 4 conflicts with"),
        Example(("deepspeed.gradient_accumulation_steps",), "deepspeed = dict(gradient_accumulation_steps=4)\n"
                "solver = dict(gradient_accumulation_batch=2)\n",
                refused="deepspeed.gradient_accumulation_steps = 4 conflicts with solver.gradient_accumulation_batch"),
        Example(("deepspeed.gradient_clipping",), "deepspeed = dict(gradient_clipping=1.0)\n"
                "solver = dict(generator=dict(clip_gradients=dict(enabled=True, clip_value=5.0)))\n",
                refused="deepspeed.gradient_clipping = 1.0 conflicts with solver.generator.clip_gradients.clip_value"),
        Example(("deepspeed.optimizer",), 'deepspeed = dict(optimizer=dict(type="Lamb", params=dict(lr=0.01)))\n',
                effect=(("cfg.solver.generator.optimizer.type", "Lamb"), ("plan.engines.generator.optimizer.type", "Lamb"))),
        Example(("deepspeed.optimizer",), 'deepspeed = dict(optimizer=dict(type="SGD"))\n'
                'solver = dict(generator=dict(optimizer=dict(type="AdamW")))\n', refused="deepspeed.optimizer = {'type': 'SGD'} conflicts with solver.generator.optimizer"),
        Example(("deepspeed.scheduler",), 'deepspeed = dict(scheduler=dict(type="WarmupLR"))\n'
                'solver = dict(generator=dict(lr_scheduler=dict(enabled=True, type="StepLR", params=dict(step_size=10))))\n',
                refused="deepspeed.scheduler conflicts with solver.generator.lr_scheduler"),
        Example(("deepspeed.zero_optimization",), "deepspeed = dict(zero_optimization=dict(stage=4))\n",
                refused="deepspeed.zero_optimization.stage: 4 is not one of 0, 1, 2, 3"),
        Example(("deepspeed.zero_allow_untested_optimizer", "deepspeed.zero_force_ds_cpu_optimizer"),
                'deepspeed = dict(config="zero2_offload")\nsolver = dict(generator=dict(optimizer=dict(type="SGD")))\n',
                effect=(("plan.engines.generator.zero_allow_untested_optimizer", True),
                        ("plan.engines.generator.zero_force_ds_cpu_optimizer", False))),
    ),
}
