"""Draw augmented samples of a configured dataset, so you can see what the pipeline does.

    python tools/visualize_data.py --config-file examples/digits/configs/digits.py -n 16 out.png \\
        --import codes --code-dir examples/digits [--split train|val] [--tile 256] [--seed 0]

Builds ``dataloader.train_data_set`` (or ``val_data_set``) from the config after importing
the user's modules, then for samples 0..n-1 runs ``get_results(i)`` through the dataset's
``data_pipeline`` (datasets without ``get_results`` fall back to ``__getitem__`` and show
whatever image it returns). Each sample is scaled to fit a ``tile`` x ``tile`` cell of a
grid with ceil(sqrt(n)) columns, with its ``mask_fields`` overlaid in colour, ``pts_fields``
as dots and ``bbox_fields`` as rectangles. The random draws are seeded per sample from
``--seed``, so the same command draws the same picture. The PNG is written atomically.
Images are written channel-for-channel as the dataset holds them (OpenCV's BGR order).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from engine.utils.fileio import atomic_write_bytes  # noqa: E402  (after the repo is on the path)

#: fixed distinct colours (BGR) for mask labels, boxes and points
PALETTE = np.array([
    (0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 128, 255),
    (255, 0, 128), (128, 255, 0), (128, 0, 255), (0, 255, 128), (255, 128, 0),
], dtype=np.uint8)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("-n", type=int, default=16, help="number of samples (from index 0)")
    parser.add_argument("output", help="the PNG to write")
    parser.add_argument("--split", choices=["train", "val"], default="train")
    parser.add_argument("--import", dest="modules", action="append", default=[],
                        help="module whose import registers the user's dataset (repeatable)")
    parser.add_argument("--code-dir", dest="code_dirs", action="append", default=[],
                        help="folder put on sys.path before the imports (repeatable)")
    parser.add_argument("--tile", type=int, default=256, help="side of one grid cell in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.n < 1 or args.tile < 16:
        parser.error("-n must be >= 1 and --tile >= 16")
    return args


def build_split(args: argparse.Namespace) -> Any:
    from engine.config import get_cfg
    from engine.data.build import build_dataset
    from engine.errors import ConfigError
    from engine.schedule.user_code import import_user_modules

    import_user_modules(args.modules, args.code_dirs)
    cfg = get_cfg(args.config_file, args.opts)
    key = "TRAIN_DATA_SET" if args.split == "train" else "VAL_DATA_SET"
    spec = cfg.DATALOADER[key]
    if not spec:
        raise ConfigError(f"dataloader.{key.lower()} is not set in {args.config_file}")
    return build_dataset(spec, where=f"dataloader.{key.lower()}")


def augmented(dataset: Any, index: int, seed: int) -> Dict[str, Any]:
    """The results dict of sample ``index`` after the pipeline (or what ``__getitem__`` gives)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass
    get_results = getattr(dataset, "get_results", None)
    pipeline = getattr(dataset, "data_pipeline", None)
    if get_results is not None and pipeline is not None:
        try:
            results = get_results(index)
        except NotImplementedError:
            results = None
        if results is not None:
            return pipeline(results)
    return from_item(dataset[index])


def from_item(item: Any) -> Dict[str, Any]:
    """Best effort: the first image-like array in what ``__getitem__`` returned."""
    if isinstance(item, dict) and "img" in item:
        return item
    values = list(item.values()) if isinstance(item, dict) else list(item) if isinstance(item, (list, tuple)) else [item]
    for value in values:
        array = to_numpy(value)
        if array is not None and array.ndim in (2, 3):
            if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
                array = array.transpose(1, 2, 0)  # CHW tensor -> HWC
            return {"img": array}
    raise ValueError(f"cannot find an image in the sample {type(item).__name__}; implement get_results(index)")


def to_numpy(value: Any) -> Optional[np.ndarray]:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return value if isinstance(value, np.ndarray) else None


def displayable(img: np.ndarray) -> np.ndarray:
    """uint8 BGR: floats (after Normalize) are stretched to [0, 255], gray becomes 3 channels."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.dtype != np.uint8:
        img = img.astype(np.float32)
        lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
        img = ((img - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(img)).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    elif img.shape[2] != 3:
        img = cv2.cvtColor(np.ascontiguousarray(img[:, :, 0]), cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img)


def draw_tile(results: Dict[str, Any], tile: int, caption: str) -> np.ndarray:
    img = displayable(results["img"])
    h, w = img.shape[:2]
    scale = tile / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    view = cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if scale >= 2 else cv2.INTER_AREA)
    for key in results.get("mask_fields", []):
        mask = np.asarray(results[key])
        if mask.ndim == 3:  # one channel per instance -> label image
            mask = (np.argmax(mask, axis=2) + 1) * (mask.max(axis=2) > 0)
        mask = cv2.resize(mask.astype(np.int32).astype(np.float32), size, interpolation=cv2.INTER_NEAREST).astype(int)
        colours = PALETTE[mask % len(PALETTE)]
        on = mask > 0
        view[on] = (0.5 * view[on] + 0.5 * colours[on]).astype(np.uint8)
    thickness = max(1, tile // 128)
    for n, key in enumerate(results.get("bbox_fields", [])):
        boxes = np.asarray(results[key], dtype=np.float64).reshape(-1, np.shape(results[key])[-1] if np.size(results[key]) else 4)
        for i, box in enumerate(boxes[:, :4] * scale):
            if np.all(np.isfinite(box)):
                colour = tuple(int(c) for c in PALETTE[(i + n) % len(PALETTE)])
                cv2.rectangle(view, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), colour, thickness)
    for n, key in enumerate(results.get("pts_fields", [])):
        points = np.asarray(results[key], dtype=np.float64)
        points = points.reshape(-1, points.shape[-1]) if points.size else np.zeros((0, 2))
        for i, point in enumerate(points[:, :2] * scale):
            if np.all(np.isfinite(point)):
                colour = tuple(int(c) for c in PALETTE[(i + 3 * n) % len(PALETTE)])
                cv2.circle(view, (int(round(point[0])), int(round(point[1]))), max(2, tile // 64), colour, -1)
    cell = np.zeros((tile, tile, 3), np.uint8)
    cell[: view.shape[0], : view.shape[1]] = view
    cv2.putText(cell, caption, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return cell


def make_grid(tiles: List[np.ndarray], tile: int) -> np.ndarray:
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    grid = np.zeros((rows * tile, cols * tile, 3), np.uint8)
    for k, cell in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = cell
    return grid


def write_png(path: str, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    atomic_write_bytes(path, data.tobytes())


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    from engine.errors import EngineError

    try:
        dataset = build_split(args)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    count = min(args.n, len(dataset))
    tiles = [draw_tile(augmented(dataset, i, args.seed * 1_000_003 + i), args.tile, f"#{i}") for i in range(count)]
    grid = make_grid(tiles, args.tile)
    write_png(args.output, grid)
    print(f"wrote {args.output}: {count} {args.split} samples, {grid.shape[1]}x{grid.shape[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
