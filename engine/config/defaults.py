"""Every framework-owned config key, its default and its meaning: the single place they are spelled.

Files use these names in lowercase; code reads them upper-case (``cfg.SOLVER.MAX_ITER``).
The config reference in ``docs/config.md`` is generated from this table (``python -m engine.config.reference``).
``trainer``, ``trainer.model`` and ``dataloader`` also accept keys of the user's own (TrainFramework's
``new_allowed`` sections); ``solver`` and ``deepspeed`` are closed.
"""

from __future__ import annotations

from engine.config.schema import Field, Open, Section

_BOOL, _INT, _FLOAT, _STR, _LIST, _DICT = (bool,), (int,), (float,), (str,), (list,), (dict,)

#: Top-level DeepSpeed keys accepted in the ``deepspeed`` section besides the ones engine
#: interprets; each is merged over the template as written. Mirrors deepspeed/runtime/
#: constants.py (0.19); a key DeepSpeed does not know would be silently ignored by it,
#: so engine rejects it with the closest names instead.
DEEPSPEED_PASSTHROUGH_KEYS = (
    "optimizer", "scheduler", "gradient_clipping", "zero_allow_untested_optimizer",
    "zero_force_ds_cpu_optimizer", "steps_per_print", "wall_clock_breakdown", "memory_breakdown",
    "prescale_gradients", "gradient_predivide_factor", "gradient_allreduce_op", "communication_data_type",
    "seq_parallel_communication_data_type", "disable_allgather", "dump_state", "amp", "torch_autocast",
    "data_types", "checkpoint", "flops_profiler", "comms_logger", "tensorboard", "csv_monitor", "wandb",
    "comet", "aio", "elasticity", "compression_training", "data_efficiency", "curriculum_learning",
    "sparse_attention", "autotuning", "nebula", "weight_quantization", "hybrid_engine", "compile",
    "timers", "monitor_config", "sequence_parallel_size", "use_data_before_expert_parallelism",
    "dataloader_drop_last", "log_level", "disable_python_gc", "zero_optimization",
    "bf16", "fp16", "activation_checkpointing", "tensor_parallel", "pipeline",
    "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
)

_EMA = Section(
    {
        "enabled": Field(False, _BOOL, "keep an exponential moving average of the generator's weights"),
        "decay_rate": Field(0.999, _FLOAT, "EMA decay per optimizer step, in [0, 1] (the share of the old average kept)", minimum=0.0),
        "num_updates": Field(0, _INT, "starting update count for the warm-up decay min(decay, (1+n)/(10+n)); -1 disables warm-up", minimum=-1),
    },
    doc="exponential moving average of the generator",
)

_SPIKE = Section(
    {
        "enabled": Field(False, _BOOL, "judge each step's loss (mean over ranks) against the steps before it; a spike is warned about and its samples recorded in output_dir/bad_batches.jsonl (docs/failures.md)"),
        "window": Field(100, _INT, "latest finite step losses the z-score is computed over", minimum=2),
        "warmup": Field(20, _INT, "step losses the window must hold before a step is judged (2 to window)", minimum=2),
        "z": Field(6.0, _FLOAT, "a step whose loss is more than z standard deviations above the window's mean is a spike", minimum=0.0),
    },
    doc="loss-spike sentinel: a z-score of the step loss over a moving window",
)

NETWORK_SOLVER = Section(
    {
        "optimizer": Section(
            {
                "type": Field("AdamW", _STR, "DeepSpeed optimizer type (Adam, AdamW, Lamb, ...) or any torch.optim class name"),
                "params": Open("keyword arguments of the optimizer (lr, weight_decay, betas, ...)", default={"lr": 1e-3}),
            }
        ),
        "lr_scheduler": Section(
            {
                "enabled": Field(False, _BOOL, "step an LR scheduler once per optimizer step"),
                "type": Field("", _STR, "any torch.optim.lr_scheduler class, LRMultiplierScheduler, WarmupMultiStepLR, WarmupCosineLR or WarmupPolynomialDecay"),
                "params": Open("keyword arguments of the scheduler", default={}),
            }
        ),
        "clip_gradients": Section(
            {
                "enabled": Field(False, _BOOL, "clip gradients at every optimizer step"),
                "clip_type": Field("norm", _STR, "norm: DeepSpeed's gradient_clipping on the global norm; value: clamp each element", choices=("norm", "value")),
                "clip_value": Field(1.0, _FLOAT, "the max norm, or the max absolute value", minimum=0.0),
                "norm_type": Field(2.0, _FLOAT, "norm order; DeepSpeed clips the 2-norm only"),
                "group": Field(False, _BOOL, "accepted for TrainFramework configs; clipping is always over all parameters"),
            }
        ),
    }
)

DEFAULTS = Section(
    {
        "output_dir": Field("./output", _STR, "where config.yaml, ds_config.json, logs, TensorBoard files and checkpoints go"),
        "output_log_name": Field("train", _STR, "log file name in output_dir (without .log)"),
        "seed": Field(42, _INT, "seed of python, numpy and torch RNGs; data order and augmentations derive from it", minimum=0),
        "dataloader": Section(
            {
                "num_workers": Field(0, _INT, "data-loader worker processes per rank", minimum=0),
                "train_data_set": Open("training data set: dict(name=<registered dataset>, transformer=[...], **params)", required_keys=("name",)),
                "val_data_set": Open("validation data set, same form (optional)", required_keys=("name",)),
                "test_data_set": Open("test data set, same form (optional; defaults to the validation set)", required_keys=("name",)),
                "group_sampler": Field(False, _BOOL, "batch landscape and portrait images separately (dataset gives aspect_ratios, get_aspect_ratio(i) or get_results(i))"),
                "seed_per_sample": Field(True, _BOOL, "seed the RNGs from (seed, epoch, rank, position) before each training sample: augmentations repeat exactly on resume, whatever num_workers (costs ~20 µs a sample)"),
                "pin_memory": Field(False, _BOOL, "pin host memory of batches (useful on GPU)"),
                "timeout": Field(0.0, _FLOAT, "seconds to wait for a batch from workers before failing (0: no limit)", minimum=0.0),
                "skip_samples": Field([], _LIST, "training-set indices left out of the data stream (solver.nan_policy 'rollback' adds the culprits it finds; docs/failures.md)"),
            },
            accepts_user_keys=True,
        ),
        "trainer": Section(
            {
                "name": Field("BaseTrainer", _STR, "trainer class in BUILD_TRAINER_REGISTRY"),
                "enable_epoch_method": Field(False, _BOOL, "train for solver.max_epoch epochs instead of solver.max_iter iterations"),
                "weights": Field("", _STR, "pretrained weights loaded into the generator before training ('' for none)"),
                "resume": Field("off", _STR, "auto: resume from the newest complete checkpoint when there is one, else start fresh (same as --resume auto)", choices=("off", "auto")),
                "weights_strict": Field(False, _BOOL, "trainer.weights must match the generator's keys exactly"),
                "device": Field("auto", _STR, "auto: CUDA when present, else CPU", choices=("auto", "cuda", "cpu")),
                "dist_timeout": Field(1800.0, _FLOAT, "seconds a collective waits for a stuck rank before the job fails (gloo; NCCL only with async error handling)", minimum=1.0),
                "log_period": Field(20, _INT, "log losses, LR and speed (console, log file, TensorBoard) every N optimizer steps", minimum=1),
                "tensorboard": Field(True, _BOOL, "write TensorBoard events to output_dir/tensorboard (rank 0); the older switch of the 'tensorboard' entry of trainer.loggers"),
                "loggers": Field(["tensorboard"], _LIST, "trackers fed from the metrics window on rank 0: tensorboard, csv, jsonl, mlflow, wandb, or a name of your own in TRACKER_REGISTRY (docs/trackers.md)"),
                "peak_tflops": Field(0.0, _FLOAT, "peak TFLOP/s of one device for MFU (0: from the table of known GPUs; on CPU MFU is reported only when this is set)", minimum=0.0),
                "progress": Field("auto", _STR, "rank 0 console: auto (a progress bar on a terminal, log lines otherwise), bar or log", choices=("auto", "bar", "log")),
                "hooks": Open("extra hooks, run after the default hooks and before CheckpointHook: [dict(name=<HOOK_REGISTRY name>, period=N, **params)]", required_keys=("name",), allow_list=True, default=[]),
                "model": Section(
                    {
                        "name": Field("", _STR, "model bundle class in BUILD_MODEL_REGISTRY (required)"),
                        "generator": Open("the network: dict(name=<BUILD_NETWORK_REGISTRY name>, **params)", required_keys=("name",), nullable=False),
                        "discriminator": Open("GAN discriminator network(s): one dict, or a list of dict(name=..., params=the network dict)", allow_list=True),
                        "loss": Open("loss config handed to the user's model (LossKeyCompose form)"),
                        "ema": Open("TrainFramework's spelling of solver.ema (enable/enabled, decay_rate, num_updates)"),
                        "g_step": Field(1, _INT, "GAN in TrainFramework's form (dmodel_step/gmodel_step): step the generator when the loop counter is a multiple of N", minimum=1),
                        "activation_checkpointing": Field(False, _BOOL, "recompute the blocks the network lists in checkpoint_blocks during backward (torch.utils.checkpoint; DeepSpeed's when deepspeed.activation_checkpointing is set)"),
                    },
                    accepts_user_keys=True,
                ),
                "loss": Open("TrainFramework's spelling of trainer.model.loss"),
            },
            accepts_user_keys=True,
        ),
        "solver": Section(
            {
                "gradient_accumulation_batch": Field(-1, _INT, "micro-batches per optimizer step; values > 1 enable accumulation"),
                "train_per_batch": Field(8, _INT, "samples per rank per optimizer step (micro batch = train_per_batch // accumulation)", minimum=1),
                "val_per_batch": Field(8, _INT, "samples per rank per evaluation batch", minimum=1),
                "test_per_batch": Field(8, _INT, "samples per rank per test batch", minimum=1),
                "max_iter": Field(1000, _INT, "optimizer steps to train (iteration mode)", minimum=1),
                "max_epoch": Field(1, _INT, "epochs to train (epoch mode, trainer.enable_epoch_method)", minimum=1),
                "max_keep": Field(5, _INT, "newest complete checkpoints kept", minimum=1),
                "checkpoint_period": Field(0, _INT, "save a checkpoint every N optimizer steps (0: only at the end)", minimum=0),
                "save_on_signal": Field(["SIGTERM", "SIGUSR1"], _LIST, "signals that save a complete checkpoint at the next step boundary on every rank and exit with code 75 (requeue); [] to keep the default handlers (docs/preemption.md)"),
                "checkpoint_async": Field(False, _BOOL, "the saving step only copies the state to host memory; files are written and fsynced in a background thread, the tag becomes complete when every rank finished (docs/preemption.md)"),
                "stop_at_iter": Field(0, _INT, "stop after saving a checkpoint at this step, as if killed (0: off); for tests and preemption drills", minimum=0),
                "nan_policy": Field("stop", _STR, "on a NaN/inf loss or gradient (fp32/bf16): stop (save the last good state, exit non-zero), skip the step, or rollback (skip-list the samples whose loss is non-finite, reload the newest complete checkpoint, go on; docs/failures.md)", choices=("stop", "skip", "rollback")),
                "max_rollbacks": Field(3, _INT, "solver.nan_policy 'rollback': rollbacks allowed in a run; one more bad step then stops as 'stop' does", minimum=0),
                "eval_period": Field(0, _INT, "evaluate on the validation set every N optimizer steps (0: only at the end)", minimum=0),
                "best_metric": Field("", _STR, "keep checkpoint tag 'best' (never rotated) by this evaluation result, e.g. 'val/loss' ('' = off)"),
                "best_mode": Field("max", _STR, "whether a larger or smaller solver.best_metric is better", choices=("max", "min")),
                "spike": _SPIKE,
                "ema": _EMA,
                "generator": NETWORK_SOLVER,
                "discriminator": Open("GAN: optimizer/lr_scheduler/clip_gradients of the discriminators: one dict for all, or a list of dict(name=..., params=...)", allow_list=True),
            }
        ),
        "deepspeed": Section(
            {
                "config": Field("zero0", _STR, "DeepSpeed template: a name in ds_configs/ (zero0..zero3, zero2_offload, zero3_offload, bf16) or a .json path"),
                "shm_comm": Field(False, _BOOL, "use DeepSpeed's shared-memory allreduce on CPU (JIT-built on first use, about 50 s; engine removes the /dev/shm buffers of its job at the end)"),
                "zero_init": Field(True, _BOOL, "under ZeRO stage 3, build networks inside deepspeed.zero.Init so no rank ever holds the whole model"),
            },
            extra=DEEPSPEED_PASSTHROUGH_KEYS,
        ),
    }
)
