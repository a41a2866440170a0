"""trainer.weights reads every form convert_ckpt.py writes: one file or shards, tied names restored."""

import json

import torch
from safetensors.torch import save_file
from torch import nn

from engine.weights.pretrained import load_weights, read_state_dict


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight  # tied: exported once


def test_sharded_index_with_tied_weights_loads_strictly(tmp_path):
    source = Tied()
    weight = source.embed.weight.detach().clone()
    save_file({"embed.weight": weight}, str(tmp_path / "model-00001-of-00001.safetensors"),
              metadata={"tied": json.dumps({"head.weight": "embed.weight"})})
    index = {"metadata": {"total_size": weight.numel() * 4, "tied": {"head.weight": "embed.weight"}},
             "weight_map": {"embed.weight": "model-00001-of-00001.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))

    state = read_state_dict(str(tmp_path / "model.safetensors.index.json"))
    assert set(state) == {"embed.weight", "head.weight"}
    target = Tied()
    load_weights(target, str(tmp_path / "model.safetensors.index.json"), strict=True)
    assert torch.equal(target.head.weight, weight)


def test_exported_pt_and_plain_files(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": {"tied": json.dumps({"v": "w"})}}, tmp_path / "e.pt")
    assert set(read_state_dict(str(tmp_path / "e.pt"))) == {"w", "v"}
    torch.save({"model": {"w": torch.zeros(1)}}, tmp_path / "nested.pth")
    assert set(read_state_dict(str(tmp_path / "nested.pth"))) == {"w"}
