"""TensorboardHook with stand-ins for the trainer, DeepSpeed engines and NVML: which tags, which values."""

from types import SimpleNamespace

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from engine.log.metrics import MetricsWindow
from engine.log.monitor import GpuMonitor
from engine.events.storage import EventStorage
from engine.log.tensorboard import TensorboardHook, image_grid
from engine.trainer.hooks import register_hooks


class FakeNvml:
    """The NVML calls GpuMonitor makes, with fixed readings; ``broken`` names calls that raise."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, broken=()):
        self.broken = set(broken)
        self.shut = False

    def _maybe_fail(self, name):
        if name in self.broken:
            raise RuntimeError(f"{name} not supported")

    def nvmlInit(self):
        self._maybe_fail("init")

    def nvmlShutdown(self):
        self.shut = True

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("handle", index)

    def nvmlDeviceGetName(self, handle):
        return b"Fake GPU"

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(gpu=87, memory=40)

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(used=3 * 2**30, total=80 * 2**30)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return 61

    def nvmlDeviceGetPowerUsage(self, handle):
        self._maybe_fail("power")
        return 250_000  # milliwatts


def test_gpu_monitor_reads_every_value_and_skips_unsupported_ones():
    monitor = GpuMonitor(FakeNvml())
    assert monitor.available and monitor.name == "Fake GPU"
    assert monitor.read() == {"util_percent": 87.0, "mem_used_gb": 3.0, "mem_total_gb": 80.0,
                              "temperature_c": 61.0, "power_w": 250.0}
    assert "power_w" not in GpuMonitor(FakeNvml(broken={"power"})).read()


def test_gpu_monitor_is_silently_off_without_nvml_or_gpu():
    assert GpuMonitor(FakeNvml(broken={"init"})).read() == {}
    if not torch.cuda.is_available():
        assert not GpuMonitor().available and GpuMonitor().read() == {}


class FakeEngine:
    def __init__(self, fp16):
        self.fp16 = fp16
        self.skipped_steps = 2
        self.optimizer = SimpleNamespace(cur_scale=1024.0)

    def get_global_grad_norm(self):
        return torch.tensor(1.5)

    def fp16_enabled(self):
        return self.fp16


class FakeTrainer:
    def __init__(self, max_iter):
        self.cfg = {"solver": {"max_iter": max_iter}}
        self.ds_config = {"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2,
                          "train_batch_size": 16, "zero_optimization": {"stage": 2}, "fp16": {"enabled": True}}
        self.iter = self.start_iter = 0
        self.max_iter = max_iter
        self.global_batch_size, self.accumulation, self.dp_size = 16, 2, 2
        self.model = SimpleNamespace(learning_rates=lambda: {"generator": 0.1, "discriminator": 0.2},
                                     engines={"generator": FakeEngine(True), "discriminator": FakeEngine(False)})
        self.storage = EventStorage()
        self.metrics = MetricsWindow(self.global_batch_size, self.accumulation * self.dp_size)
        self.data_time = 0.0


def test_tensorboard_hook_writes_every_tag(tmp_path):
    trainer = FakeTrainer(max_iter=4)
    hook = register_hooks(trainer, [TensorboardHook(2, log_dir=str(tmp_path), nvml=FakeNvml())])[0]
    hook.before_train()
    for trainer.iter in range(4):
        trainer.step_outputs = {"loss": torch.tensor(float(trainer.iter)), "l1": torch.tensor(0.5), "tokens": 100.0}
        trainer.data_time = 0.001
        trainer.metrics.add(trainer.step_outputs, trainer.data_time)  # what the loop does after each step
        if trainer.iter == 2:
            trainer.storage.put_metrics({"val/acc": 0.9})
            trainer.storage.put_image("val/images", torch.rand(3, 1, 5, 5))
        hook.after_step()
    hook.after_train()
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    expected = {"train/loss", "train/l1", "lr/generator", "lr/discriminator", "grad_norm/generator",
                "speed/samples_per_s", "speed/tokens_per_s", "time/step_s", "time/data_s", "time/compute_s",
                "time/data_share", "system/cpu_rss_gb", "gpu/util_percent", "gpu/mem_used_gb", "gpu/temperature_c",
                "gpu/power_w", "fp16/generator/loss_scale", "fp16/generator/skipped_steps", "val/acc"}
    assert expected <= scalars and "train/tokens" not in scalars and "fp16/discriminator/loss_scale" not in scalars
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(2, 0.5), (4, 2.5)]  # window means
    assert [e.step for e in events.Scalars("val/acc")] == [3]  # at the step it was computed
    assert events.Scalars("fp16/generator/loss_scale")[0].value == 1024.0
    assert events.Tags()["images"] == ["val/images"]
    assert {"config/text_summary", "deepspeed/text_summary"} <= set(events.Tags()["tensors"])


def test_image_grid_layout():
    grid = image_grid(torch.ones(10, 3, 4, 6), columns=4, pad=1)
    assert grid.shape == (3, 3 * 5 + 1, 4 * 7 + 1)
    assert image_grid(torch.full((1, 2, 2), 255, dtype=torch.uint8)).max() == 1.0
    with pytest.raises(ValueError, match="N×C×H×W"):
        image_grid(torch.zeros(4, 4))
