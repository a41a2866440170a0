"""Finding and handling the bad batches of a run: non-finite and loss-spike steps, their samples.

``spike``: the moving-window z-score that judges a step's loss. ``records``: the
``bad_batches.jsonl`` format, its writer and its reader. ``sentinel``: what a trainer calls
(``BadBatchSentinel``) and the ``SpikeHook`` that judges each step. ``culprits``: re-running a
micro-batch's samples one by one to find the non-finite ones. ``rollback``:
``solver.nan_policy = 'rollback'`` (skip-list the culprits, reload the newest checkpoint).
"""

from engine.sentinel.records import BAD_BATCHES_FILE, BadBatchLog, read_bad_batches
from engine.sentinel.sentinel import BadBatchSentinel, SpikeHook, build_sentinel
from engine.sentinel.spike import Spike, SpikeWindow

__all__ = ["BAD_BATCHES_FILE", "BadBatchLog", "BadBatchSentinel", "Spike", "SpikeHook", "SpikeWindow", "build_sentinel",
           "read_bad_batches"]
