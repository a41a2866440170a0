"""The streaming ZeRO reader's page dropping keeps the data: a dropped page of a mapped file reads back the same."""

import torch

from engine.checkpoint.zero_stream import PartitionedParam, RankPartitions, drop_mapped_pages


def test_dropped_pages_read_back_the_same(tmp_path):
    values = torch.randn(5000)  # several pages
    torch.save({"t": values}, tmp_path / "f.pt")
    mapped = torch.load(tmp_path / "f.pt", weights_only=True, mmap=True)["t"]
    part = mapped[1000:4000]
    before = part.clone()
    drop_mapped_pages(part)
    assert torch.equal(part, before) and torch.equal(mapped, values)


def test_partitioned_param_joins_pieces_across_ranks(tmp_path):
    # a ZeRO-2 style group of 10 elements over 2 ranks: rank 0 holds 0..4, rank 1 holds 5..9
    for rank, chunk in enumerate((torch.arange(0.0, 5.0), torch.arange(5.0, 10.0))):
        torch.save({"optimizer_state_dict": {"single_partition_of_fp32_groups": [chunk]}}, tmp_path / f"r{rank}.pt")
    source = RankPartitions([str(tmp_path / "r0.pt"), str(tmp_path / "r1.pt")], "single_partition_of_fp32_groups")
    param = PartitionedParam(source, (2, 3), [(0, 0, 3, 5), (1, 0, 0, 4)])
    assert torch.equal(param.contiguous(), torch.tensor([[3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]))
    source.release()
    assert torch.equal(param.contiguous(), torch.tensor([[3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]))  # maps again
