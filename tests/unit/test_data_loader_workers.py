"""Loader workers: OpenCV single-threaded inside workers, shared-memory exhaustion is a clear error."""

import cv2
import pytest
import torch
from torch.utils.data import Dataset

from engine.data.loader import build_inference_loader, build_train_loader, next_batch
from engine.data.samplers import TrainingSampler
from engine.errors import EngineError


class CvThreads(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.tensor([cv2.getNumThreads()])


def sequential_threads():
    """What this OpenCV build reports after setNumThreads(0) (0 or 1: no thread pool)."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(0)
    try:
        return cv2.getNumThreads()
    finally:
        cv2.setNumThreads(before)


def test_workers_run_opencv_without_a_thread_pool():
    expected = sequential_threads()
    assert expected in (0, 1)
    sampler = TrainingSampler(4, rank=0, world_size=1, samples_per_step=2, seed=0)
    loader = build_train_loader(CvThreads(), sampler, micro_batch=2, num_workers=2, seed=0)
    it = iter(loader)
    seen = torch.cat([next(it) for _ in range(4)]).flatten().tolist()
    assert set(seen) == {expected}
    infer = build_inference_loader(CvThreads(), batch_size=2, rank=0, world_size=1, num_workers=1)
    assert set(torch.cat(list(infer)).flatten().tolist()) == {expected}


def raising(message):
    def gen():
        raise RuntimeError(message)
        yield  # pragma: no cover

    return gen()


@pytest.mark.parametrize("message", [
    "DataLoader worker (pid 123) is killed by signal: Bus error. It is possible that dataloader's workers "
    "are out of shared memory. Please try to raise your shared memory limit.",
    "unable to write to file </torch_42_1234_0>: No space left on device (28)",
])
def test_shared_memory_exhaustion_names_the_fix(message):
    with pytest.raises(EngineError, match="dataloader.num_workers.*shm-size"):
        next_batch(raising(message))


def test_other_runtime_errors_pass_through():
    with pytest.raises(RuntimeError, match="boom") as info:
        next_batch(raising("boom"))
    assert not isinstance(info.value, EngineError)
    assert next_batch(iter([7])) == 7
    with pytest.raises(StopIteration):
        next_batch(iter([]))
