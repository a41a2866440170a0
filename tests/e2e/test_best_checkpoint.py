"""solver.best_metric: the ``best`` tag follows the metric, survives rotation, and is remembered on resume."""

import json
import re
import sys

from engine.checkpoint import layout
from tests.helpers import TOY, run_cli


def _run(out, max_iter, *extra, resume=False):
    return run_cli([sys.executable, str(TOY / "train.py"), "--config-file", str(TOY / "cfg.py"),
                    *(["--resume"] if resume else []), "--opts",
                    "output_dir", str(out), "solver.max_iter", str(max_iter), "solver.eval_period", "5",
                    "solver.checkpoint_period", "5", "solver.max_keep", "1",
                    "dataloader.val_data_set", "{'name': 'ToyRegression', 'size': 64}",
                    "solver.best_metric", "val/loss", "solver.best_mode", "min", *extra])


def _evals(log):
    return {int(s): float(v) for s, v in re.findall(r"eval at step (\d+): val/loss ([0-9.]+)", log)}


def test_best_tag_holds_the_lowest_metric_and_is_never_rotated(tmp_path):
    out = tmp_path / "out"
    result = _run(out, 20)
    assert result.returncode == 0, result.stdout[-4000:]
    root = out / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["best", "iter_0000020", "latest"]  # max_keep 1
    assert (root / "latest").read_text().strip() == "iter_0000020"
    assert layout.check_complete(str(root / "best")) == (True, "")
    marker = json.loads((root / "best" / layout.MARKER).read_text())
    evals = _evals(result.stdout)
    best_step = min(evals, key=evals.get)
    assert sorted(evals) == [5, 10, 15, 20]
    assert marker["iteration"] == best_step and marker["best"]["metric"] == "val/loss"
    assert abs(marker["best"]["value"] - evals[best_step]) < 1e-4  # the log shows 4 decimals
    assert (root / "best" / "generator").is_dir()

    resumed = _run(out, 30, resume=True)
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    after = json.loads((root / "best" / layout.MARKER).read_text())
    assert after["best"]["value"] <= marker["best"]["value"]  # the resumed run compared with the stored best
    for line in re.findall(r"best checkpoint: .*", resumed.stdout)[:1]:
        assert f"(was {marker['best']['value']:.6g})" in line
    assert sorted(p.name for p in root.iterdir()) == ["best", "iter_0000030", "latest"]


def test_unknown_best_metric_fails_with_the_names_evaluate_returned(tmp_path):
    result = _run(tmp_path / "out", 5, "solver.best_metric", "val/acc")
    assert result.returncode != 0
    assert "solver.best_metric = 'val/acc' is not an evaluation result; evaluate returned: val/loss" in result.stdout
