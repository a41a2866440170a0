"""A test hook: what each DeepSpeed engine says it runs with, read back after ``deepspeed.initialize``.

Enable with ``--opts trainer.hooks "[{'name': 'ReportDeepSpeedConfigHook'}]"``; rank 0 writes
``output_dir/ds_reported.json``: per engine, the config dict DeepSpeed parsed
(``engine._config._param_dict``) and the values its accessors return.
"""

import json
import os

from engine import comm
from engine.trainer.hook_registry import HOOK_REGISTRY
from engine.events.hooks import HookBase


@HOOK_REGISTRY.register()
class ReportDeepSpeedConfigHook(HookBase):
    def before_train(self):
        if comm.get_rank() != 0:
            return
        report = {}
        for name, engine in self.trainer.model.engines.items():
            report[name] = {
                "param_dict": engine._config._param_dict,
                "train_batch_size": engine.train_batch_size(),
                "train_micro_batch_size_per_gpu": engine.train_micro_batch_size_per_gpu(),
                "gradient_accumulation_steps": engine.gradient_accumulation_steps(),
                "zero_stage": engine.zero_optimization_stage(),
                "gradient_clipping": engine.gradient_clipping(),
                "bf16": engine.bfloat16_enabled(),
            }
        with open(os.path.join(self.trainer.cfg.OUTPUT_DIR, "ds_reported.json"), "w") as f:
            json.dump(report, f, default=repr)
