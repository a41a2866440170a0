"""The run plan and the DeepSpeed config derived from the engine config, below model/ and trainer/.

``engine.runplan.plan`` (``RunPlan``: parallel sizes, batch arithmetic, the per-network DeepSpeed
configs), ``ds_config``/``ds_file``/``ds_schema``/``ds_constructors`` (deriving, reading and
checking DeepSpeed configs) and ``memory`` (the memory estimate) import only config/, solver/ and
the bottom packages, so the model, the trainer and the commands all read one plan.
"""
