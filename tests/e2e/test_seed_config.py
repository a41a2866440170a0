"""A seed-era config through the real entry point: helper variables, a key of the user's own,
a ``_base_`` child changing the optimizer type, scheduler items the seed ignored, a warm-up
longer than the run. It must train, and say in its log what it did with each."""

import sys
import textwrap

import pytest
import yaml

from tests.helpers import DIGITS, run_cli

BASE = """
    _base_ = {digits_base!r}
    solver = dict(generator=dict(optimizer=dict(type="SGD", params=dict(lr=0.05, momentum=0.9, nesterov=True))))
"""

CHILD = """
    import os

    RUN_ROOT = os.environ["SEED_CONFIG_RUN_ROOT"]
    steps = 6


    def under_root(name):
        return os.path.join(RUN_ROOT, name)


    _base_ = "sgd_base.py"
    output_dir = under_root("run")
    trainer = dict(vis_period=3)
    solver = dict(
        max_iter=steps,
        eval_period=0,
        generator=dict(
            optimizer=dict(type="AdamW", params=dict(lr=1e-3)),
            lr_scheduler=dict(params=dict(
                lr_scheduler_param=dict(name="WarmupCosineLR", steps=[3], gamma=0.5),
                max_iter=steps,
            )),
        ),
    )
"""


@pytest.mark.slow
def test_seed_style_config_trains_and_reports_what_it_ignored(tmp_path):
    (tmp_path / "sgd_base.py").write_text(textwrap.dedent(BASE).format(digits_base=str(DIGITS / "configs" / "base.py")))
    (tmp_path / "seg.py").write_text(textwrap.dedent(CHILD))
    result = run_cli([sys.executable, str(DIGITS / "train.py"), "--config-file", str(tmp_path / "seg.py")],
                     env={"SEED_CONFIG_RUN_ROOT": str(tmp_path)})
    out = tmp_path / "run"
    assert result.returncode == 0, result.stdout[-4000:]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["solver"]["generator"]["optimizer"] == {"type": "AdamW", "params": {"lr": 1e-3}}  # no momentum
    assert saved["trainer"]["vis_period"] == 3 and "steps" not in saved and "RUN_ROOT" not in saved
    log = (out / "digits.log").read_text()
    assert "step 6/6" in log
    assert "config keys of your own, not read by engine: trainer.vis_period" in log
    assert "lr_scheduler_param: steps, gamma not used by 'WarmupCosineLR'" in log
    assert log.count("warmup_iter=50 is longer than max_iter=6: clamped to 6") == 1  # warned once, not per build
