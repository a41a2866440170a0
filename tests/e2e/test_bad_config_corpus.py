"""A corpus of bad configs: each is rejected before training, by key path, with no traceback.

Each case goes through the real entry point (``BaseScheduler(argv).schedule()``) in this
process: a rejected config exits with code 2 before any process group exists, so running
them in-process is both faithful and fast.
"""

import sys
import textwrap

import pytest
import torch

from engine.schedule.scheduler import BaseScheduler
from tests.helpers import DIGITS

sys.path.insert(0, str(DIGITS))
import codes  # noqa: E402,F401  (registers the digits classes the configs name)

BASE = DIGITS / "configs" / "digits.py"

# (case id, --opts overrides of the digits config, text the message must contain)
OPTS_CASES = [
    ("top-level typo", ["outptu_dir", "x"], "outptu_dir: unknown key. Did you mean 'output_dir'"),
    ("dataloader typo", ["dataloader.num_worker", "2"], "dataloader.num_worker: unknown key"),
    ("trainer typo", ["trainer.log_perod", "5"], "trainer.log_perod: unknown key"),
    ("model typo", ["trainer.model.nmae", "x"], "trainer.model.nmae: unknown key"),
    ("solver typo", ["solver.max_iters", "5"], "solver.max_iters: unknown key. Did you mean 'max_iter'"),
    ("optimizer section typo", ["solver.generator.optimiser", "{}"], "solver.generator.optimiser: unknown key"),
    ("optimizer key typo", ["solver.generator.optimizer.tpye", "SGD"], "solver.generator.optimizer.tpye: unknown key"),
    ("scheduler key typo", ["solver.generator.lr_scheduler.enable", "True"],
     "solver.generator.lr_scheduler.enable: unknown key. Did you mean 'enabled'"),
    ("clip key typo", ["solver.generator.clip_gradients.clip_val", "1"], "solver.generator.clip_gradients.clip_val: unknown key"),
    ("ema key typo", ["solver.ema.decay", "0.9"], "solver.ema.decay: unknown key"),
    ("spike warmup above window", ["solver.spike.window", "10", "solver.spike.warmup", "20"],
     "solver.spike.warmup = 20 is larger than solver.spike.window = 10"),
    ("deepspeed key typo", ["deepspeed.zero_optimisation", "{}"], "deepspeed.zero_optimisation: unknown key"),
    ("int as string", ["solver.max_iter", "'100'"], "solver.max_iter: expected int, got '100'"),
    ("float for int", ["solver.train_per_batch", "8.5"], "solver.train_per_batch: expected int, got 8.5"),
    ("bool for int", ["dataloader.num_workers", "True"], "dataloader.num_workers: expected int, got True"),
    ("string for bool", ["trainer.enable_epoch_method", "'yes'"], "trainer.enable_epoch_method: expected bool"),
    ("list for str", ["output_dir", "[1, 2]"], "output_dir: expected str"),
    ("nan policy typo", ["solver.nan_policy", "rollbak"], "solver.nan_policy: 'rollbak' is not one of ['stop', 'skip', 'rollback']"),
    ("negative skip index", ["dataloader.skip_samples", "[4, -1]"], "dataloader.skip_samples[1] = -1: expected a training-set index"),
    ("dict for section", ["solver", "5"], "solver: expected a dict"),
    ("generator not a dict", ["trainer.model.generator", "'DigitsNet'"], "trainer.model.generator: expected a dict"),
    ("zero batch", ["solver.train_per_batch", "0"], "solver.train_per_batch: 0 is below the minimum 1"),
    ("negative workers", ["dataloader.num_workers", "-1"], "dataloader.num_workers: -1 is below the minimum 0"),
    ("zero max_iter", ["solver.max_iter", "0"], "solver.max_iter: 0 is below the minimum 1"),
    ("negative clip", ["solver.generator.clip_gradients.clip_value", "-1.0"], "clip_value: -1.0 is below the minimum"),
    ("bad device", ["trainer.device", "'tpu'"], "trainer.device: 'tpu' is not one of"),
    ("bad clip type", ["solver.generator.clip_gradients.clip_type", "'l1'"], "clip_type: 'l1' is not one of"),
    ("indivisible batch", ["solver.train_per_batch", "30", "solver.gradient_accumulation_batch", "4"],
     "solver.train_per_batch = 30 is not divisible by solver.gradient_accumulation_batch = 4"),
    ("unknown trainer", ["trainer.name", "DigitTrainer"], "trainer.name: No object named 'DigitTrainer' in registry TRAINER"),
    ("unknown model", ["trainer.model.name", "DigitModel"], "trainer.model.name: No object named 'DigitModel'"),
    ("unknown network", ["trainer.model.generator.name", "DigitNet"], "trainer.model.generator.name: No object named 'DigitNet'"),
    ("unknown dataset", ["dataloader.train_data_set.name", "Digits"], "dataloader.train_data_set.name: No object named 'Digits'"),
    ("unknown val dataset", ["dataloader.val_data_set.name", "DigitDataset"], "dataloader.val_data_set.name"),
    ("unknown transform", ["dataloader.train_data_set.transformer.0.name", "RandomAfine"],
     "dataloader.train_data_set.transformer[0].name: No object named 'RandomAfine'"),
    ("bad transform param", ["dataloader.train_data_set.transformer.0.p", "1.5"], "dataloader.train_data_set.transformer[0]"),
    ("unknown transform param", ["dataloader.train_data_set.transformer.0.rotate", "5"],
     "dataloader.train_data_set.transformer[0]: unexpected parameter 'rotate'"),
    ("transformer not a list", ["dataloader.train_data_set.transformer", "{'name': 'RandomFlip'}"],
     "dataloader.train_data_set.transformer: expected a list"),
    ("unknown optimizer", ["solver.generator.optimizer.type", "Adamm"], "solver.generator.optimizer.type"),
    ("bad optimizer param", ["solver.generator.optimizer.type", "SGD", "solver.generator.optimizer.params.learning_rate", "0.1"],
     "solver.generator.optimizer"),
    ("unknown scheduler", ["solver.generator.lr_scheduler.type", "CosineLR"], "solver.generator.lr_scheduler.type"),
    ("bad scheduler param", ["solver.generator.lr_scheduler.params.warmup_iter", "-5"], "solver.generator.lr_scheduler.params"),
    ("scheduler shape param typo", ["solver.generator.lr_scheduler.params.lr_scheduler_param.end_valeu", "0.1"],
     "lr_scheduler_param.end_valeu: unknown parameter of 'WarmupCosineLR'. Did you mean 'end_value'"),
    ("deepspeed batch conflict", ["deepspeed.train_micro_batch_size_per_gpu", "4"],
     "deepspeed.train_micro_batch_size_per_gpu = 4 conflicts with solver.train_per_batch"),
    ("deepspeed accumulation conflict", ["deepspeed.gradient_accumulation_steps", "4", "solver.gradient_accumulation_batch", "2"],
     "deepspeed.gradient_accumulation_steps = 4 conflicts with solver.gradient_accumulation_batch"),
    ("taken accumulation indivisible", ["deepspeed.gradient_accumulation_steps", "3"],
     "solver.train_per_batch = 32 is not divisible by deepspeed.gradient_accumulation_steps = 3"),
    ("deepspeed clipping conflict", ["deepspeed.gradient_clipping", "1.0"],
     "deepspeed.gradient_clipping = 1.0 conflicts with solver.generator.clip_gradients.clip_value"),
    ("deepspeed optimizer conflict", ["deepspeed.optimizer", "{'type': 'Adam'}"],
     "deepspeed.optimizer = {'type': 'Adam'} conflicts with solver.generator.optimizer = {'type': 'AdamW'"),
    ("fp16 on cpu", ["deepspeed.fp16", "{'enabled': True}"], "deepspeed.fp16.enabled = true, but this run's device (cpu)"),
    ("unknown template", ["deepspeed.config", "zero5"], "deepspeed.config: 'zero5' is neither a file nor a bundled template"),
    ("pipeline with zero2", ["deepspeed.config", "zero2", "deepspeed.pipeline", "{'stages': 2}"], "ZeRO 0-1 only"),
    ("ema conflict", ["trainer.model.ema", "{'decay_rate': 0.9}", "solver.ema.decay_rate", "0.5"],
     "trainer.model.ema.decay_rate = 0.9 conflicts with solver.ema.decay_rate = 0.5"),
    ("odd opts", ["solver.max_iter"], "--opts: expected KEY VALUE pairs"),
]

# Inside the deepspeed section: checked against DeepSpeed's own config classes, before any process group
_NO_LR_SCHEDULE = ["solver.generator.lr_scheduler.enabled", "False"]
DEEPSPEED_CASES = [
    ("zero key typo", ["deepspeed.zero_optimization.stag", "2"],
     "deepspeed.zero_optimization.stag: unknown key. Did you mean 'stage'"),
    ("zero key typo beside the template's", ["deepspeed.zero_optimization.overlap_com", "True"],
     "deepspeed.zero_optimization.overlap_com: unknown key. Did you mean 'overlap_comm'"),
    ("offload key typo (depth 3)", ["deepspeed.config", "zero2_offload", "deepspeed.zero_optimization.offload_optimizer.pin_memry", "True"],
     "deepspeed.zero_optimization.offload_optimizer.pin_memry: unknown key. Did you mean 'pin_memory'"),
    ("offload device", ["deepspeed.zero_optimization.offload_optimizer", "{'device': 'gpu'}"],
     "deepspeed.zero_optimization.offload_optimizer.device: 'gpu': expected 'none', 'cpu' or 'nvme'"),
    ("zero stage out of range", ["deepspeed.zero_optimization.stage", "4"], "deepspeed.zero_optimization.stage: 4 is not one of 0, 1, 2, 3"),
    ("zero stage as word", ["deepspeed.zero_optimization.stage", "two"], "deepspeed.zero_optimization.stage: 'two' is not one of"),
    ("negative bucket", ["deepspeed.zero_optimization.reduce_bucket_size", "-5"],
     "deepspeed.zero_optimization.reduce_bucket_size: -5: expected greater than 0"),
    ("zero section not a dict", ["deepspeed.zero_optimization", "2"], "deepspeed.zero_optimization: expected a dict"),
    ("bf16 key typo", ["deepspeed.bf16", "{'enabeld': True}"], "deepspeed.bf16.enabeld: unknown key. Did you mean 'enabled'"),
    ("bf16 enabled not a bool", ["deepspeed.bf16.enabled", "maybe"], "deepspeed.bf16.enabled: 'maybe': expected a valid boolean"),
    ("fp16 key typo", ["deepspeed.fp16", "{'loss_scale_windw': 100}"],
     "deepspeed.fp16.loss_scale_windw: unknown key. Did you mean 'loss_scale_window'"),
    ("tensor parallel typo", ["deepspeed.tensor_parallel", "{'autotp_siz': 2}"],
     "deepspeed.tensor_parallel.autotp_siz: unknown key. Did you mean 'autotp_size'"),
    ("monitor typo", ["deepspeed.tensorboard", "{'enabld': True}"], "deepspeed.tensorboard.enabld: unknown key. Did you mean 'enabled'"),
    ("pipeline typo", ["deepspeed.pipeline", "{'stagse': 2}"], "deepspeed.pipeline.stagse: unknown key. Did you mean 'stages'"),
    ("pipeline stages as word", ["deepspeed.pipeline", "{'stages': 'two'}"], "deepspeed.pipeline.stages: 'two': expected an integer ≥ 1"),
    ("tensor parallel size zero", ["deepspeed.tensor_parallel", "{'autotp_size': 0}"],
     "deepspeed.tensor_parallel.autotp_size: 0: expected an integer ≥ 1"),
    ("pipeline wider than the world", ["deepspeed.pipeline", "{'stages': 2}"], "deepspeed.pipeline.stages = 2: 2 does not divide the world size 1"),
    ("activation checkpointing typo", ["deepspeed.activation_checkpointing", "{'partition_activation': True}"],
     "deepspeed.activation_checkpointing.partition_activation: unknown key. Did you mean 'partition_activations'"),
    ("steps_per_print as word", ["deepspeed.steps_per_print", "often"], "deepspeed.steps_per_print: 'often': expected an integer ≥ 1"),
    ("bool flag as word", ["deepspeed.wall_clock_breakdown", "'yes'"], "deepspeed.wall_clock_breakdown: 'yes': expected true or false"),
    ("communication type", ["deepspeed.communication_data_type", "fp8"],
     "deepspeed.communication_data_type: 'fp8': expected one of fp16, bf16, fp32"),
    ("flops profiler typo", ["deepspeed.flops_profiler", "{'enabled': True, 'profile_stp': 1}"],
     "deepspeed.flops_profiler.profile_stp: unknown key. Did you mean 'profile_step'"),
    ("scheduler section typo", [*_NO_LR_SCHEDULE, "deepspeed.scheduler", "{'type': 'WarmupLR', 'param': {}}"],
     "deepspeed.scheduler.param: unknown key. Did you mean 'params'"),
    ("unknown DeepSpeed scheduler", [*_NO_LR_SCHEDULE, "deepspeed.scheduler", "{'type': 'WarmupLinear'}"],
     "deepspeed.scheduler.type: 'WarmupLinear' is neither a DeepSpeed scheduler nor a torch.optim.lr_scheduler class. "
     "Did you mean 'WarmupLR'"),
    ("DeepSpeed scheduler param typo", [*_NO_LR_SCHEDULE, "deepspeed.scheduler", "{'type': 'WarmupLR', 'params': {'warmup_num_step': 5}}"],
     "deepspeed.scheduler.params: unexpected parameter 'warmup_num_step'. Did you mean 'warmup_num_steps'"),
    ("DeepSpeed scheduler bad value", [*_NO_LR_SCHEDULE, "deepspeed.scheduler", "{'type': 'WarmupLR', 'params': {'warmup_num_steps': 0}}"],
     "deepspeed.scheduler.params: WarmupLR rejected the value: warmup_num_steps must be a positive integer"),
]

# Constructor arguments, bound to the class that will receive them
CONSTRUCTOR_CASES = [
    ("DeepSpeed AdamW given momentum", ["solver.generator.optimizer.params.momentum", "0.9"],
     "solver.generator.optimizer.params: unexpected parameter 'momentum'"),
    ("DeepSpeed AdamW bad lr", ["solver.generator.optimizer.params.lr", "-1.0"],
     "solver.generator.optimizer.params: AdamW rejected the value: Invalid learning rate: -1.0"),
    ("DeepSpeed Lion given eps", ["solver.generator.optimizer.type", "Lion", "solver.generator.optimizer.params.eps", "1e-8"],
     "solver.generator.optimizer.params: unexpected parameter 'eps'"),
    ("DeepSpeed optimizer max_grad_norm", ["solver.generator.optimizer.params.max_grad_norm", "1.0"],
     "solver.generator.optimizer.params.max_grad_norm: DeepSpeed does not accept it"),
    ("client optimizer bad value", ["solver.generator.optimizer.type", "SGD", "solver.generator.optimizer.params.momentum", "-1"],
     "solver.generator.optimizer"),
    ("unknown loss", ["trainer.model.loss.cls.0.name", "CrossEntropyLos"],
     "trainer.model.loss.cls[0].name: No object named 'CrossEntropyLos'"),
    ("loss param typo", ["trainer.model.loss.cls.0.param.lambda_wieght", "1.0"],
     "trainer.model.loss.cls[0]: unexpected parameter 'lambda_wieght'"),
    ("dataset param typo", ["dataloader.train_data_set.splt", "train"], "dataloader.train_data_set: unexpected parameter 'splt'"),
    ("network param typo", ["trainer.model.generator.widht", "32"], "trainer.model.generator: unexpected parameter 'widht'"),
    ("transform value", ["dataloader.train_data_set.transformer.0.max_shear_degree", "'a lot'"],
     "dataloader.train_data_set.transformer[0]"),
]

# (case id, file name, file text; {base} is the digits base config, text the message must contain)
FILE_CASES = [
    ("missing _base_", "a.py", "_base_ = 'nowhere.py'\n", "nowhere.py (a _base_ of"),
    ("cyclic _base_", "a.py", "_base_ = 'a.py'\n", "cyclic inheritance"),
    ("_base_ not a path", "a.py", "_base_ = 3\n", "_base_ must be a path or a list of paths"),
    ("broken python", "a.py", "_base_ = '{base}'\nsolver = dict(max_iter=1/0)\n", "ZeroDivisionError"),
    ("broken yaml", "a.yaml", "_base_: {base}\nsolver: [unclosed\n", "not valid YAML"),
    ("yaml top level list", "a.yaml", "- 1\n- 2\n", "the top level must be a mapping"),
    ("yaml typo", "a.yaml", "_base_: {base}\nsolver:\n  max_iterr: 3\n", "solver.max_iterr: unknown key"),
    ("unsupported extension", "a.json", "{{}}\n", "unsupported config file type '.json'"),
]


# A DeepSpeed JSON of the user's own in deepspeed.config: (case id, JSON text, extra config lines, expected text);
# {json} in the expected text is that file's path, named because the key came from it. The digits
# config writes its optimizer and batch size, so a file that sets them differently is a conflict.
TEMPLATE_CASES = [
    ("file zero typo", '{{"zero_optimization": {{"stag": 2}}}}', "",
     "deepspeed.zero_optimization.stag (from {json}, the deepspeed.config file): unknown key. Did you mean 'stage'"),
    ("file top-level typo", '{{"gradient_acumulation_steps": 2}}', "",
     "deepspeed.gradient_acumulation_steps (from {json}, the deepspeed.config file): unknown DeepSpeed key"),
    ("file wrong type", '{{"bf16": {{"enabled": "sometimes"}}}}', "",
     "deepspeed.bf16.enabled (from {json}, the deepspeed.config file): 'sometimes': expected a valid boolean"),
    ("file not JSON", '{{"zero_optimization": }}', "", "deepspeed.config: {json} is not valid JSON"),
    ("file not an object", '[1, 2]', "", "deepspeed.config: {json} must hold a JSON object"),
    ("file optimizer against the solver's", '{{"optimizer": {{"type": "SGD", "params": {{"lr": 0.1}}}}}}', "",
     "deepspeed.optimizer (from {json}, the deepspeed.config file) = {{'type': 'SGD', 'params': {{'lr': 0.1}}}} "
     "conflicts with solver.generator.optimizer"),
    ("file batch against the solver's", '{{"train_micro_batch_size_per_gpu": 4}}', "",
     "deepspeed.train_micro_batch_size_per_gpu (from {json}, the deepspeed.config file) = 4 conflicts with solver.train_per_batch"),
]


def run_entry(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        BaseScheduler(argv).schedule()
    assert not torch.distributed.is_initialized()  # rejected before any process group existed
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


ALL_OPTS_CASES = OPTS_CASES + DEEPSPEED_CASES + CONSTRUCTOR_CASES


@pytest.mark.parametrize("opts,expected", [c[1:] for c in ALL_OPTS_CASES], ids=[c[0] for c in ALL_OPTS_CASES])
def test_bad_overrides_are_rejected_by_key_path(opts, expected, capsys, tmp_path):
    code, output = run_entry(["--config-file", str(BASE), "--opts", "output_dir", str(tmp_path / "o"), *opts], capsys)
    assert code == 2
    assert expected in output, output
    assert "Traceback" not in output
    assert not (tmp_path / "o").exists()  # rejected before any output was created


@pytest.mark.parametrize("name,text,expected", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_bad_files_are_rejected(name, text, expected, capsys, tmp_path):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).format(base=BASE))
    code, output = run_entry(["--config-file", str(path)], capsys)
    assert code == 2 and expected in output, output
    assert "Traceback" not in output


@pytest.mark.parametrize("ds_text,extra,expected", [c[1:] for c in TEMPLATE_CASES], ids=[c[0] for c in TEMPLATE_CASES])
def test_bad_deepspeed_files_are_named(ds_text, extra, expected, capsys, tmp_path):
    ds_json = tmp_path / "my_ds_config.json"
    ds_json.write_text(ds_text.format())
    config = tmp_path / "a.py"
    config.write_text(f"_base_ = {str(BASE)!r}\ndeepspeed = dict(config={str(ds_json)!r})\n"
                      f"output_dir = {str(tmp_path / 'o')!r}\n{extra}")
    code, output = run_entry(["--config-file", str(config)], capsys)
    assert code == 2 and expected.format(json=ds_json) in output, output
    assert "Traceback" not in output
    assert not (tmp_path / "o").exists()


def test_the_corpus_is_large_enough():
    deepspeed_and_constructors = len(DEEPSPEED_CASES) + len(CONSTRUCTOR_CASES) + len(TEMPLATE_CASES)
    assert deepspeed_and_constructors >= 25
    assert len(ALL_OPTS_CASES) + len(FILE_CASES) + len(TEMPLATE_CASES) >= 80
