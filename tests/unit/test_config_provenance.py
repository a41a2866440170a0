"""Where each config value came from: default, the file, a ``_base_`` file, ``--opts``."""

import pytest

from engine.config import get_cfg
from engine.config.provenance import DEFAULT, OPTS, trace_config
from engine.errors import ConfigError
from tests.unit.test_config import write


@pytest.fixture
def chain(tmp_path):
    write(tmp_path / "base.py", """
        solver = dict(max_iter=10, train_per_batch=4, generator=dict(optimizer=dict(type="SGD", params=dict(lr=0.1))))
        deepspeed = dict(config="zero1", zero_optimization=dict(reduce_bucket_size=100))
        """)
    write(tmp_path / "top.yaml", """
        _base_: base.py
        trainer:
          model: {name: M, generator: {name: Net, widths: [1, 2]}}
        dataloader:
          train_data_set: {name: D}
        solver:
          max_iter: 20
          generator:
            optimizer: {_delete_: true, type: AdamW}
        """)
    return tmp_path / "top.yaml"


def test_each_key_names_its_last_writer(chain):
    prov = trace_config(str(chain), ["SOLVER.TRAIN_PER_BATCH", "8", "deepspeed.bf16", "{'enabled': True}"])
    assert prov.source("solver.max_iter").startswith("file ") and prov.source("solver.max_iter").endswith("top.yaml")
    assert prov.source("deepspeed.config").startswith("_base_ ") and prov.source("deepspeed.config").endswith("base.py")
    assert prov.source("solver.train_per_batch") == OPTS
    assert prov.source("deepspeed.bf16.enabled") == OPTS
    assert prov.source("solver.seed") == DEFAULT and not prov.user_set("solver.ema")
    # a list is one value; a key under it is as old as the list
    assert prov.source("trainer.model.generator.widths.0") == prov.source("trainer.model.generator.widths")
    # _delete_ replaced the base's optimizer: its params are no longer the base's
    assert prov.source("solver.generator.optimizer.params.lr") == DEFAULT
    assert prov.source("solver.generator.optimizer.type").startswith("file")
    assert prov.user_set("solver.generator.optimizer") and prov.user_set("deepspeed")
    # the record describes the config the loader resolves
    cfg = get_cfg(str(chain), ["SOLVER.TRAIN_PER_BATCH", "8", "deepspeed.bf16", "{'enabled': True}"])
    assert cfg.SOLVER.TRAIN_PER_BATCH == 8 and cfg.SOLVER.MAX_ITER == 20


def test_a_broken_base_is_the_loaders_error(tmp_path):
    write(tmp_path / "top.py", "_base_ = 'missing.py'\n")
    with pytest.raises(ConfigError, match="config file not found"):
        trace_config(str(tmp_path / "top.py"))
