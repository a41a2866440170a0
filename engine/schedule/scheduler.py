"""``BaseScheduler``: parse, validate, start distributed, build the trainer, run it."""

from __future__ import annotations

import logging
import os
import random
import sys
import traceback
from argparse import Namespace
from typing import List, Optional

from engine.weights.safe_load import trust_checkpoints
from engine.config import CfgNode, dump_cfg, get_cfg, user_key_paths
from engine.config.provenance import trace_config
from engine.errors import EngineError
from engine import launch
from engine.schedule.args import parse_args
from engine.schedule.preflight import preflight
from engine.runplan.ds_file import welcome_ds_file
from engine.runplan.plan import RunPlan, build_run_plan, use_run_plan, write_plan_files
from engine.trainer.build import build_trainer
from engine.model.run_plan import declared_layer_specs
from engine.schedule.user_code import reimport_user_modules
from engine.log.logger import setup_logger
from engine.collect_env import collect_env, format_env
from engine.data.loader import worker_failure

EXIT_BAD_INPUT = 2


class BaseScheduler:
    """Entry point of a training script: ``BaseScheduler().schedule()``.

    Works under plain ``python`` (world size 1, or ``--num-gpus N`` local processes),
    ``torchrun`` and the ``deepspeed`` launcher. Bad input ends with one clear message and
    exit code 2, before any process group or output directory is created.
    """

    def __init__(self, argv: Optional[List[str]] = None) -> None:
        self.args = parse_args(argv)

    def schedule(self) -> None:
        args = self.args
        try:
            cfg = welcome_ds_file(get_cfg(args.config_file, args.opts))
            preflight(cfg, world_size=self._world_size(), device=launch.select_device(cfg.TRAINER.DEVICE))
            if not launch.launched_externally() and args.num_gpus * args.num_machines > 1:
                self._spawn(cfg)
                return
            if not launch.launched_externally():
                host, port = launch.parse_dist_url(args.dist_url)
                launch.set_rendezvous_env(0, 1, 0, 1, host, port, "python")
            run_worker(self, cfg)
        except EngineError as exc:
            _fail(exc)

    def _world_size(self) -> int:
        """Processes the job will run: the launcher's, or ``--num-gpus`` × ``--num-machines``."""
        if launch.launched_externally():
            return int(os.environ["WORLD_SIZE"])
        return self.args.num_gpus * self.args.num_machines

    def _spawn(self, cfg: CfgNode) -> None:
        """Plain ``python --num-gpus N``: start N local workers, as the seed did."""
        import torch.multiprocessing as mp

        host, port = launch.parse_dist_url(self.args.dist_url)
        try:
            mp.start_processes(_spawned_worker, args=(self, cfg, host, port), nprocs=self.args.num_gpus,
                               start_method="spawn", join=True)
        except mp.ProcessExitedException as exc:
            # the worker already reported why; end with its code instead of a second traceback
            print(f"engine: worker {exc.error_index} exited with code {exc.exit_code}", file=sys.stderr, flush=True)
            sys.exit(exc.exit_code or 1)

    # ---- overridable steps of one worker -------------------------------------------------------
    def build_trainer(self, cfg: CfgNode):
        return build_trainer(cfg)

    def build_plan(self, cfg: CfgNode, info: launch.LaunchInfo, device: str) -> RunPlan:
        """The run plan of this rank: every derived fact, checked, before anything starts."""
        nodes = max(1, info.world_size // max(1, info.local_world_size))
        return build_run_plan(cfg, rank=info.rank, world_size=info.world_size, device=device, nodes=nodes,
                              local_rank=info.local_rank, layer_specs=declared_layer_specs(cfg),
                              provenance=trace_config(self.args.config_file, self.args.opts))


def _spawned_worker(local_rank: int, scheduler: BaseScheduler, cfg: CfgNode, host: str, port: int) -> None:
    reimport_user_modules()
    args = scheduler.args
    per_machine = args.num_gpus
    launch.set_rendezvous_env(args.machine_rank * per_machine + local_rank, per_machine * args.num_machines,
                              local_rank, per_machine, host, port, "spawn")
    try:
        run_worker(scheduler, cfg)
    except EngineError as exc:
        _fail(exc)


def run_worker(scheduler: BaseScheduler, cfg: CfgNode) -> None:
    """Everything one rank does, from the config check to the process-group teardown."""
    info = launch.read_launch_env()
    device = launch.select_device(cfg.TRAINER.DEVICE)
    arch_note = launch.fix_cuda_arch_list() if device == "cuda" else None
    plan = scheduler.build_plan(cfg, info, device)  # config check, nothing started yet
    threads = launch.configure_threads(info)
    launch.init_distributed(info, device, shm_comm=cfg.DEEPSPEED.SHM_COMM, timeout_s=cfg.TRAINER.DIST_TIMEOUT)
    try:
        logger = setup_logger(cfg.OUTPUT_DIR, cfg.OUTPUT_LOG_NAME, info.rank)
        if arch_note:
            logger.warning(arch_note)
        if info.rank == 0:
            dump_cfg(cfg, os.path.join(cfg.OUTPUT_DIR, "config.yaml"))
            write_plan_files(plan, cfg.OUTPUT_DIR)  # before the build: a failed build still leaves what it was given
        logger.info(f"world size {info.world_size} ({info.launcher}), device {device}, {threads} threads per rank")
        logger.info(f"DeepSpeed: {plan.summary()}")
        own_keys = user_key_paths(cfg)
        if own_keys:
            logger.info("config keys of your own, not read by engine: " + ", ".join(own_keys))
        if info.rank == 0:
            logger.info("environment:\n" + format_env(collect_env(plan.ds_config(), info.world_size)))
        seed_everything(cfg.SEED)  # same seed on every rank: identical initial weights
        with use_run_plan(plan):
            trainer = scheduler.build_trainer(cfg)
        plan = getattr(trainer, "plan", plan)  # with the epoch arithmetic of the data set
        if info.rank == 0:
            write_plan_files(plan, cfg.OUTPUT_DIR)
            for note in plan.notes:
                logger.warning(note)
        seed_everything(cfg.SEED + info.rank)  # then per-rank randomness (dropout) differs
        trust_checkpoints(scheduler.args.trust_checkpoint)  # before the first checkpoint file is read
        with use_run_plan(plan):
            trainer.resume_or_load(scheduler.args.resume)
            trainer.loop()  # the seed's entry; BaseTrainer.loop runs train()
    except BaseException as exc:
        clear = worker_failure(exc)  # a data-loader worker died: torch's error may surface anywhere
        peer_loss = _report_rank_failure(info, clear or exc)
        launch.shutdown_distributed(barrier=False)  # peers may be gone: no collective here
        if peer_loss:
            raise SystemExit(1) from None  # the message above says it all; a gloo traceback would bury it
        if clear is not None:
            raise clear from exc
        raise
    launch.shutdown_distributed(barrier=True)


def _report_rank_failure(info: launch.LaunchInfo, exc: BaseException) -> bool:
    """Log once why this rank stops and leave a line for its peers, who then name this rank.

    Returns whether the failure was a lost peer (this rank's own code was fine). A rank
    other than 0 logs EngineErrors too: ``_fail`` prints only on rank 0, and a data or
    checkpoint error on rank 1 alone would otherwise end the job without a word.
    """
    log = logging.getLogger("engine")
    if isinstance(exc, EngineError):
        launch.report_failure(info.rank, f"EngineError: {exc}")
        if info.rank != 0:
            log.error(f"rank {info.rank} failed: {exc}")
        return False
    if isinstance(exc, Exception) and launch.is_peer_loss(exc):
        log.error(launch.describe_peer_loss(info.rank, info.world_size, exc))
        return True
    launch.report_failure(info.rank, f"{type(exc).__name__}: {exc}")
    log.error(f"rank {info.rank} failed:\n{traceback.format_exc()}")
    return False


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _fail(exc: EngineError) -> None:
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"engine: error: {exc}", file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_INPUT)
