"""The bad-batch sentinel: records the samples of non-finite and loss-spike steps to ``bad_batches.jsonl``.

``spike``: the moving-window z-score that judges a step's loss. ``records``: the file format,
its writer and its reader. ``sentinel``: what a trainer calls (``BadBatchSentinel``) and the
``SpikeHook`` that judges each step.
"""

from engine.sentinel.records import BAD_BATCHES_FILE, BadBatchLog, read_bad_batches
from engine.sentinel.sentinel import BadBatchSentinel, SpikeHook, build_sentinel
from engine.sentinel.spike import Spike, SpikeWindow

__all__ = ["BAD_BATCHES_FILE", "BadBatchLog", "BadBatchSentinel", "Spike", "SpikeHook", "SpikeWindow", "build_sentinel",
           "read_bad_batches"]
