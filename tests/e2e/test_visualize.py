"""tools/visualize_data.py: a grid PNG of augmented samples with masks, boxes and points drawn.

The first grid comes from the command line as a user runs it; the seeded repeat runs the tool's
``main`` in this process, which proves the same (one picture per command) without a second start.
"""

import subprocess
import sys

import cv2
import numpy as np

from tests.helpers import DIGITS, REPO, load_tool, run_tool

TOOL = REPO / "tools" / "visualize_data.py"


def test_digits_grid_png(tmp_path):
    out = tmp_path / "sub" / "grid.png"
    proc = subprocess.run(
        [sys.executable, str(TOOL), "--config-file", "examples/digits/configs/digits.py", "-n", "10", str(out),
         "--import", "codes", "--code-dir", "examples/digits", "--tile", "64", "--split", "train"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    grid = cv2.imread(str(out))
    assert grid.shape == (3 * 64, 4 * 64, 3)  # 10 samples: ceil(sqrt(10)) = 4 columns, 3 rows
    assert grid[:64, :64].max() > 100 and not grid[128:, 128:].any()  # a digit drawn; the 2 spare cells empty
    assert not list(out.parent.glob(".visualize-*"))  # no temporary left behind
    again = tmp_path / "again.png"
    repeat = run_tool("visualize_data", "--config-file", DIGITS / "configs" / "digits.py", "-n", "10", again,
                      "--import", "codes", "--code-dir", DIGITS, "--tile", "64")
    assert repeat.returncode == 0, repeat.stdout
    assert np.array_equal(cv2.imread(str(again)), grid)  # seeded: the same command draws the same picture


def test_masks_boxes_and_points_are_drawn():
    tool = load_tool("visualize_data")
    mask = np.zeros((32, 32), np.uint8)
    mask[:8, :8] = 1
    results = dict(img=np.zeros((32, 32, 3), np.uint8), img_fields=["img"], mask_fields=["gt"], gt=mask,
                   bbox_fields=["boxes"], boxes=np.array([[16, 16, 30, 30]], np.float32),
                   pts_fields=["pts"], pts=np.array([[24.0, 4.0]], np.float32))
    cell = tool.draw_tile(results, 64, "")
    assert cell.shape == (64, 64, 3)
    assert cell[8, 8].any() and not cell[20, 20].any()  # mask overlay at 2x scale, background untouched
    assert cell[32, 45].any() and cell[45, 32].any() and not cell[45, 45].any()  # box outline, hollow
    assert cell[8, 48].any()  # keypoint dot at (24, 4) * 2
    normalized = dict(img=np.random.RandomState(0).randn(8, 8, 3).astype(np.float32))
    assert tool.draw_tile(normalized, 32, "").dtype == np.uint8  # float images (after Normalize) are stretched
