"""engine.checkpoint.writer: torch.save with write-behind writes loadable files, and fails loudly and cleanly."""

import errno
import os
import resource
import sys

import pytest
import torch
from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

from engine.checkpoint import writer
from engine.checkpoint.async_writer import CapturingCheckpointEngine


def test_write_file_streams_chunks_and_loads_with_weights_only(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "CHUNK_BYTES", 4096)  # a 100 KB tensor then crosses many chunk boundaries
    flat = torch.randn(25_000)
    state = {"flat": flat, "view": flat[10:20], "step": 7, "names": ["a", "b"], "half": torch.ones(3).half()}
    path = tmp_path / "sub" / "state.pt"
    size = writer.write_file(str(path), state)
    assert size == path.stat().st_size > flat.numel() * 4
    back = torch.load(path, weights_only=True)
    assert torch.equal(back["flat"], flat) and torch.equal(back["view"], flat[10:20])
    assert back["view"].untyped_storage().data_ptr() == back["flat"].untyped_storage().data_ptr()  # torch.save's ties
    assert back["step"] == 7 and back["names"] == ["a", "b"] and back["half"].dtype == torch.float16


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_write_behind_is_engaged_on_linux(tmp_path, monkeypatch):
    """Without sync_file_range the files are still right, only slower: check that the fast path is live."""
    monkeypatch.setattr(writer, "CHUNK_BYTES", 4096)
    assert writer._sync_file_range is not None
    with writer.WriteBehindFile(str(tmp_path / "f")) as f:
        data = os.urandom(10 * 4096 + 123)
        assert f.write(data) == len(data)
        f.sync()
        assert f.size == len(data) and f._behind and f._settled >= 8 * 4096  # chunks were pushed and waited for
    assert (tmp_path / "f").read_bytes() == data


def test_failed_write_keeps_errno_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / "big.pt"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))  # a disk-full stand-in; SIGXFSZ is ignored by Python
    try:
        with pytest.raises(OSError) as caught:
            writer.write_file(str(path), {"w": torch.zeros(100_000)})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert caught.value.errno == errno.EFBIG and caught.value.filename == str(path)  # torch's writer says neither
    assert not path.exists()


def test_streaming_engine_replaces_only_the_default_zip_engine(tmp_path):
    default = TorchCheckpointEngine()
    default.zipfile_serialization = True  # what a DeepSpeed config gives by default
    assert writer.replaceable(default)
    legacy = TorchCheckpointEngine()  # zipfile_serialization False: the legacy format the user asked for
    assert not writer.replaceable(legacy) and not writer.replaceable(CapturingCheckpointEngine())

    class Owner:  # stands in for a DeepSpeed engine
        checkpoint_engine = default

    streaming = writer.StreamingCheckpointEngine()
    with writer.checkpoint_engine_of(Owner, streaming):
        Owner.checkpoint_engine.save({"w": torch.ones(2)}, str(tmp_path / "a.pt"))
    assert Owner.checkpoint_engine is default
    assert streaming.bytes_written == (tmp_path / "a.pt").stat().st_size
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["w"], torch.ones(2))
    with pytest.raises(RuntimeError, match="only saves"):
        streaming.load(str(tmp_path / "a.pt"))
