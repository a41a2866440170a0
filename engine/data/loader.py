"""DataLoaders for training (endless, seeded per sample) and inference (each sample once)."""

from __future__ import annotations

from typing import Any, Callable, Iterator, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from engine.data import rng
from engine.data.samplers import InferenceSampler, TrainingSampler
from engine.errors import EngineError

#: what torch's DataLoader says when a worker ran out of shared memory (/dev/shm): the worker
#: dies of SIGBUS, or the tensor it hands back cannot be mapped
_SHM_SIGNS = ("shared memory", "bus error", "/dev/shm")


def worker_init_fn(worker_id: int) -> None:
    """Runs once in every loader worker: no OpenCV thread pool inside the worker.

    Each worker is already a process of its own; OpenCV's threads on top of ``num_workers``
    processes oversubscribe the cores (and a pool forked from the parent can deadlock).
    Seeding is not done here: ``SeededDataset`` seeds every sample.
    """
    import cv2

    cv2.setNumThreads(0)


def next_batch(iterator: Iterator) -> Any:
    """``next(iterator)``, with a DataLoader worker killed by shared-memory exhaustion
    turned into an ``EngineError`` that says what to change."""
    try:
        return next(iterator)
    except RuntimeError as error:
        if not is_shared_memory_error(error):
            failure = worker_failure(error, iterator)
            if failure is not None:
                raise failure from error
            raise
        raise EngineError(
            f"a data-loader worker ran out of shared memory ({error}); lower dataloader.num_workers "
            "(or the batch size / sample size), or give the container more shared memory "
            "(docker run --shm-size=16g, or --ipc=host)"
        ) from error


def worker_failure(error: BaseException, iterator: Optional[Iterator] = None) -> Optional[EngineError]:
    """The clear error for a worker that hung past ``dataloader.timeout`` or died (SIGKILL, segfault,
    OOM); None for anything else. torch's own messages name neither the setting nor what to look at.

    A dead worker is also reported by torch's SIGCHLD handler, which raises wherever the main
    process happens to be (not only in ``next``): ``run_worker`` asks this function too.
    """
    text = str(error)
    if not isinstance(error, RuntimeError):
        return None
    if text.startswith("DataLoader timed out after"):
        workers = getattr(iterator, "_num_workers", "the")
        return EngineError(
            f"no batch from {workers} data-loader worker(s) within dataloader.timeout ({text}): a worker hangs "
            "(a stuck file read, a deadlock in the dataset's __getitem__) or loading is slower than that; "
            "raise dataloader.timeout, or debug with dataloader.num_workers 0"
        )
    if "DataLoader worker" in text and ("exited unexpectedly" in text or "killed by signal" in text):
        return EngineError(
            f"a data-loader worker died ({text.strip().splitlines()[0]}): killed by the kernel (out of memory? "
            "see dmesg) or crashed in native code of the dataset; lower dataloader.num_workers, or debug with "
            "dataloader.num_workers 0"
        )
    return None


def is_shared_memory_error(error: BaseException) -> bool:
    text = str(error).lower()
    # "unable to write to file </torch_123_...>: No space left on device": a full /dev/shm
    return any(sign in text for sign in _SHM_SIGNS) or ("no space left on device" in text and "torch_" in text)


class SeededDataset(Dataset):
    """Wraps a dataset so that each ``(index, seed)`` item is loaded with RNGs seeded by ``seed``.

    Random augmentations then depend only on which sample is drawn in which epoch, not on
    the worker that loads it or on what ran before: the property exact resume needs. In the
    main process (``num_workers=0``) the training RNG states are restored afterwards, so
    loading data does not shift dropout or other training randomness.
    """

    def __init__(self, dataset: Dataset, seed_per_sample: bool = True) -> None:
        self.dataset = dataset
        # off: the indices pass through unseeded (cheaper; augmentations then follow whatever
        # RNG state the process or worker has, so a resumed run no longer repeats them exactly)
        self.seed_per_sample = seed_per_sample

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: Tuple[int, int]) -> Any:
        return self.__getitems__([item])[0]

    def __getitems__(self, items: List[Tuple[int, int]]) -> List[Any]:
        """A whole micro-batch (DataLoader calls this when it exists): RNG states saved once per batch."""
        if not self.seed_per_sample:
            return [self.dataset[index] for index, _ in items]
        if get_worker_info() is not None:  # a worker's RNG states serve nothing but its samples
            return self.seeded_samples(items)
        saved = rng.capture()
        try:
            return self.seeded_samples(items)
        finally:
            rng.restore(saved)

    def seeded_samples(self, items: List[Tuple[int, int]]) -> List[Any]:
        """Each ``(index, seed)`` item loaded right after seeding every RNG with its seed.

        This is all a loader worker runs per micro-batch; the main process also saves and
        restores the training RNG states around it (``__getitems__``).

        Args:
            items: ``(index, seed)`` pairs, as the training sampler yields them.

        Returns:
            The samples, in the order of ``items``.
        """
        samples = []
        for index, seed in items:
            rng.seed_all(seed)
            samples.append(self.dataset[index])
        return samples

    def __getattr__(self, name: str) -> Any:  # expose the user's dataset attributes
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def build_train_loader(dataset: Dataset, sampler: TrainingSampler, *, micro_batch: int, num_workers: int,
                       collate_fn: Optional[Callable] = None, pin_memory: bool = False, timeout: float = 0.0,
                       seed: int = 0, seed_per_sample: bool = True) -> DataLoader:
    """An endless loader of micro-batches in sampler order."""
    return DataLoader(
        SeededDataset(dataset, seed_per_sample), batch_size=micro_batch, sampler=sampler, num_workers=num_workers,
        collate_fn=collate_fn, pin_memory=pin_memory, drop_last=True, timeout=timeout,
        persistent_workers=num_workers > 0, worker_init_fn=worker_init_fn,
        # workers' base seeds come from this generator, not from the global RNG, so creating
        # the iterator does not consume training randomness
        generator=torch.Generator().manual_seed(seed),
    )


def build_inference_loader(dataset: Dataset, *, batch_size: int, rank: int, world_size: int, num_workers: int,
                           collate_fn: Optional[Callable] = None, pin_memory: bool = False,
                           timeout: float = 0.0) -> DataLoader:
    """A loader that visits this rank's slice of ``dataset`` once, in order."""
    return DataLoader(
        dataset, batch_size=batch_size, sampler=InferenceSampler(len(dataset), rank=rank, world_size=world_size),
        num_workers=num_workers, collate_fn=collate_fn, pin_memory=pin_memory, drop_last=False, timeout=timeout,
        worker_init_fn=worker_init_fn, generator=torch.Generator().manual_seed(0),
    )
