"""A corpus of bad configs: each is rejected before training, by key path, with no traceback.

Each case goes through the real entry point (``BaseScheduler(argv).schedule()``) in this
process: a rejected config exits with code 2 before any process group exists, so running
them in-process is both faithful and fast.
"""

import sys
import textwrap

import pytest

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
    ("deepspeed key typo", ["deepspeed.zero_optimisation", "{}"], "deepspeed.zero_optimisation: unknown key"),
    ("int as string", ["solver.max_iter", "'100'"], "solver.max_iter: expected int, got '100'"),
    ("float for int", ["solver.train_per_batch", "8.5"], "solver.train_per_batch: expected int, got 8.5"),
    ("bool for int", ["dataloader.num_workers", "True"], "dataloader.num_workers: expected int, got True"),
    ("string for bool", ["trainer.enable_epoch_method", "'yes'"], "trainer.enable_epoch_method: expected bool"),
    ("list for str", ["output_dir", "[1, 2]"], "output_dir: expected str"),
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
    ("bad scheduler param", ["solver.generator.lr_scheduler.params.warmup_iter", "5000"], "solver.generator.lr_scheduler.params"),
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


def run_entry(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        BaseScheduler(argv).schedule()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


@pytest.mark.parametrize("opts,expected", [c[1:] for c in OPTS_CASES], ids=[c[0] for c in OPTS_CASES])
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


def test_the_corpus_is_large_enough():
    assert len(OPTS_CASES) + len(FILE_CASES) >= 40
