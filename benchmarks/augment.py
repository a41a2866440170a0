"""Augmentation speed, engine.transforms against albumentations, measured the way a dataset calls it.

Each engine transform is built from its config dict into an ``EngineDataSet``'s
``data_pipeline`` and run through ``SeededDataset`` (the loader's wrapper): per-sample
seeding on, a fresh ``results`` dict per sample, exactly what a training data-loader worker
does (``SeededDataset.seeded_samples``, one micro-batch at a time). ``--main-process``
measures ``num_workers=0`` instead, where engine also saves and restores the training RNG
states once per micro-batch (``engine.data.rng``, about 2-3 us a sample, mostly Python's
``random.getstate``/``setstate``); a worker does not, and the one thread per contestant
(below) is a worker's setting, so the default charges engine what a worker pays.
Each albumentations 2.0.8 transform, with the same parameters, runs in its own
``A.Compose`` on the same images. Pixel transforms carry only the image on both sides;
spatial ones also carry 8 boxes and 16 keypoints on both sides (a detection sample).

Images are scikit-learn's two sample photos resized to each ``--sizes`` edge, as uint8
and as float32 in [0, 1]. One thread (``cv2.setNumThreads(0)``), as in a data-loader
worker. For each transform the two contestants alternate, ``--rounds`` times (which one
goes first also alternates), and the table shows engine's median images/s divided by
albumentations' median images/s: above 1 is engine faster. The machine this was written
on is shared, so single passes are noisy; medians over alternating rounds are what make
the ratios comparable. Speed goals live here, not in timed tests.

The last table is the seed README's training pipeline (``RandomFlip``, ``Resize``,
``RandomColorJitter`` with all its sub-ops, with their probabilities) against the closest
albumentations ``Compose``, 512 x 512 uint8.

    python benchmarks/augment.py [--sizes 256,512,1024] [--dtypes uint8,float32] [--rounds 5]
                                 [--pass-ms 60] [--only RandomGamma,Resize] [--skip-pipeline]
                                 [--main-process]

Prints numbers; it is not a test. Needs albumentations (the ``test`` extra).
"""

from __future__ import annotations

import argparse
import ctypes
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence, Tuple

import albumentations as A
import cv2
import numpy as np
from sklearn.datasets import load_sample_image

import engine.transforms  # noqa: F401  (registers the transforms the configs below name)
from engine.data.dataset import EngineDataSet
from engine.data.loader import SeededDataset

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class Case:
    """One transform: engine's config dict, albumentations' equivalent, and whether it is spatial."""

    name: str
    engine: Dict[str, Any]
    albu: Callable[[int], Any]  # edge length -> albumentations transform
    spatial: bool = False
    uint8_only: bool = False  # engine rejects float32 input (JPEG, CLAHE are defined on bytes)


def jitter(**kw: Tuple[float, float]) -> Any:
    """``A.ColorJitter`` changing only the named sub-op (the others at their identity)."""
    ranges = dict(brightness=(1, 1), contrast=(1, 1), saturation=(1, 1), hue=(0, 0))
    ranges.update(kw)
    return A.ColorJitter(**ranges, p=1.0)


CASES: List[Case] = [
    Case("RandomGamma", dict(name="RandomGamma", gamma_limit=(0.8, 1.2), p=1.0),
         lambda s: A.RandomGamma(gamma_limit=(80, 120), p=1.0)),
    Case("RandomBrightness", dict(name="RandomBrightness", brightness_limit=0.2, p=1.0),
         lambda s: jitter(brightness=(0.8, 1.2))),
    Case("RandomContrast", dict(name="RandomContrast", contrast_limit=0.2, p=1.0),
         lambda s: jitter(contrast=(0.8, 1.2))),
    Case("RandomBrightnessContrast", dict(name="RandomBrightnessContrast", brightness_limit=0.2, contrast_limit=0.2,
                                          p=1.0),
         lambda s: A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=1.0)),
    Case("RandomSaturation", dict(name="RandomSaturation", saturation_limit=0.2, p=1.0),
         lambda s: jitter(saturation=(0.8, 1.2))),
    Case("RandomHue", dict(name="RandomHue", hue_limit=0.1, p=1.0), lambda s: jitter(hue=(-0.1, 0.1))),
    Case("ToGray", dict(name="ToGray", p=1.0), lambda s: A.ToGray(p=1.0)),
    Case("RandomToneCurve", dict(name="RandomToneCurve", scale=0.1, p=1.0),
         lambda s: A.RandomToneCurve(scale=0.1, p=1.0)),
    Case("RandomGaussianBlur", dict(name="RandomGaussianBlur", blur_limit=(3, 7), sigma_limit=(0.5, 1.5), p=1.0),
         lambda s: A.GaussianBlur(blur_limit=(3, 7), sigma_limit=(0.5, 1.5), p=1.0)),
    Case("RandomSharpen", dict(name="RandomSharpen", alpha=(0.2, 0.5), lightness=(0.5, 1.0), p=1.0),
         lambda s: A.Sharpen(alpha=(0.2, 0.5), lightness=(0.5, 1.0), p=1.0)),
    Case("RandomCLAHE", dict(name="RandomCLAHE", clip_limit=4.0, p=1.0),
         lambda s: A.CLAHE(clip_limit=(1, 4), p=1.0), uint8_only=True),
    Case("RandomCompress", dict(name="RandomCompress", quality_lower=70, quality_upper=90, p=1.0),
         lambda s: A.ImageCompression(quality_range=(70, 90), p=1.0), uint8_only=True),
    Case("Normalize", dict(name="Normalize", mean=MEAN, std=STD),
         lambda s: A.Normalize(mean=[m / 255 for m in MEAN], std=[v / 255 for v in STD], max_pixel_value=255)),
    Case("RandomFlip", dict(name="RandomFlip", direction="horizontal", p=1.0),
         lambda s: A.HorizontalFlip(p=1.0), spatial=True),
    Case("Resize", dict(name="Resize", target_size=384, keep_ratio=False),
         lambda s: A.Resize(384, 384), spatial=True),
    Case("RandomAffine", dict(name="RandomAffine", rotate_degree_range=10, max_translate_ratio=0.1,
                              scaling_ratio_range=(0.9, 1.1), max_shear_degree=2, border_val=0, min_area_ratio=0.0,
                              min_bbox_size=0, max_aspect_ratio=1e9),
         lambda s: A.Affine(rotate=(-10, 10), translate_percent=(-0.1, 0.1), scale=(0.9, 1.1), shear=(-2, 2),
                            fill=0, p=1.0), spatial=True),
]

#: the seed README's training transformer list ("1. 数据配置"), verbatim
SEED_README_TRAIN = [
    dict(name="RandomFlip", direction=["horizontal", "vertical", "diagonal"], p=0.5),
    dict(name="Resize", target_size=256, interpolation="INTER_LINEAR", keep_ratio=False, clip_border=True),
    dict(name="RandomColorJitter", brightness_limit=[0.6, 1.2], brightness_p=0.6, contrast_limit=[0.6, 1.4],
         contrast_p=0.6, saturation_limit=[0.6, 1.4], saturation_p=0.5, hue_limit=[-0.1, 0.1], hue_p=0.05,
         blur_limit=[3, 7], blur_p=0.2, gamma_limit=[0.3, 3.0], gamma_p=0.1),
]


def albu_seed_readme() -> List[Any]:
    """The closest albumentations pipeline: one ColorJitter per sub-op, same ranges and probabilities.

    engine's jitter applies its sub-ops in a random order, albumentations' here in a fixed
    one: the same work per image.
    """
    return [
        A.OneOf([A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0),
                 A.Sequential([A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0)], p=1.0)], p=0.5),
        A.Resize(256, 256, interpolation=cv2.INTER_LINEAR),
        A.ColorJitter(brightness=(0.6, 1.2), contrast=(1, 1), saturation=(1, 1), hue=(0, 0), p=0.6),
        A.ColorJitter(brightness=(1, 1), contrast=(0.6, 1.4), saturation=(1, 1), hue=(0, 0), p=0.6),
        A.ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(0.6, 1.4), hue=(0, 0), p=0.5),
        A.ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(1, 1), hue=(-0.1, 0.1), p=0.05),
        A.GaussianBlur(blur_limit=(3, 7), p=0.2),
        A.RandomGamma(gamma_limit=(30, 300), p=0.1),
        A.CLAHE(clip_limit=(1, 4), p=0.2),
    ]


class Samples:
    """The photos at one size and dtype, with the boxes and keypoints of a detection sample."""

    def __init__(self, size: int, dtype: str) -> None:
        rng = np.random.RandomState(0)
        photos = [cv2.resize(load_sample_image(n), (size, size), interpolation=cv2.INTER_AREA)
                  for n in ("china.jpg", "flower.jpg")]
        self.images = [p if dtype == "uint8" else (p / np.float32(255)).astype(np.float32) for p in photos]
        xy = rng.uniform(0.05, 0.6, (8, 2)) * size
        self.boxes = np.concatenate([xy, xy + rng.uniform(0.08, 0.35, (8, 2)) * size], 1).astype(np.float32)
        self.pts = (rng.uniform(0, 1, (16, 2)) * size).astype(np.float32)
        self.labels = np.arange(8)


class BenchDataset(EngineDataSet):
    """A dataset as a user writes one: a fresh results dict per sample, then ``self.data_pipeline``."""

    def __init__(self, transformer: List[dict], samples: Samples, spatial: bool, length: int) -> None:
        super().__init__(transformer)
        self.samples, self.spatial, self.length = samples, spatial, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        s = self.samples
        results = dict(img=s.images[index % len(s.images)], img_fields=["img"], color_fields=["img"])
        if self.spatial:
            results.update(boxes=s.boxes, bbox_fields=["boxes"], labels=s.labels, label_fields={"boxes": ["labels"]},
                           pts=s.pts, pts_fields=["pts"])
        return self.data_pipeline(results)


#: samples per micro-batch: both sides hold a batch's outputs until the batch is done, as a loader does
#: (``--batch``; 1 drops each output at once, so the allocator hands the same memory back every call)
BATCH = 16
#: fetch as the main process does (``--main-process``: RNG snapshot around each micro-batch), not as a worker
MAIN_PROCESS = False


def engine_pass(transformer: List[dict], samples: Samples, spatial: bool, calls: int) -> Callable[[], None]:
    """``calls`` samples fetched a micro-batch at a time through ``SeededDataset``, as a DataLoader worker does.

    A worker's ``__getitems__`` is ``seeded_samples`` (``get_worker_info()`` is set there,
    not here); with ``--main-process``, ``__getitems__`` itself, RNG snapshot included.
    """
    dataset = SeededDataset(BenchDataset(transformer, samples, spatial, calls))
    fetch = dataset.__getitems__ if MAIN_PROCESS else dataset.seeded_samples
    items = [(i, 1000 + i) for i in range(calls)]  # (index, per-sample seed), as the sampler yields them
    batches = [items[k:k + BATCH] for k in range(0, calls, BATCH)]

    def run() -> None:
        for batch in batches:
            fetch(batch)
    return run


def albu_pass(transforms: List[Any], samples: Samples, spatial: bool, calls: int) -> Callable[[], None]:
    """The same samples through one ``A.Compose``, outputs held per micro-batch like engine's."""
    extra = dict(bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
                 keypoint_params=A.KeypointParams(format="xy", remove_invisible=False)) if spatial else {}
    compose = A.Compose(transforms, seed=0, **extra)

    def sample(i: int) -> dict:
        img = samples.images[i % len(samples.images)]
        if spatial:
            return compose(image=img, bboxes=samples.boxes, labels=samples.labels, keypoints=samples.pts)
        return compose(image=img)

    def run() -> None:
        compose.set_random_seed(0)  # every pass sees the same draws, like engine's fixed per-sample seeds
        for k in range(0, calls, BATCH):
            [sample(i) for i in range(k, min(k + BATCH, calls))]
    return run


def timed(run: Callable[[], None]) -> float:
    """CPU seconds (user + system, page faults included) of this process spent in ``run``.

    CPU time rather than wall time: on a shared machine wall time mostly measures how long
    other processes held the core, and cv2 runs single-threaded here, so the process's CPU
    time is the work one data-loader worker would do.
    """
    start = time.process_time()
    run()
    return time.process_time() - start


def race(ours: Callable[[], None], theirs: Callable[[], None], calls: int, rounds: int) -> Tuple[float, float]:
    """Median images/s of each, over ``rounds`` alternating passes (the first runner alternates too)."""
    ours(), theirs()  # warm-up: first-call allocations, lazy imports, cv2 kernel setup
    t_ours, t_theirs = [], []
    for r in range(rounds):
        if r % 2:
            t_theirs.append(timed(theirs))
            t_ours.append(timed(ours))
        else:
            t_ours.append(timed(ours))
            t_theirs.append(timed(theirs))
    return calls / float(np.median(t_ours)), calls / float(np.median(t_theirs))


def calls_for(pass_ms: float, probe: Callable[[int], Callable[[], None]]) -> int:
    """Calls per pass so one pass lasts about ``pass_ms`` (at least a micro-batch), from a 2-call probe."""
    run = probe(2)
    run()
    per_call = max(timed(run) / 2, 1e-6)
    return max(BATCH, int(pass_ms / 1000 / per_call))


def table(rows: Dict[str, Dict[str, float]], columns: Sequence[str]) -> str:
    width = max(len(n) for n in rows) + 2
    lines = [f"{'transform':<{width}}" + "".join(f"{c:>14}" for c in columns)]
    for name, ratios in rows.items():
        lines.append(f"{name:<{width}}" + "".join(f"{ratios[c]:>13.2f}x" if c in ratios else f"{'n/a':>14}"
                                                  for c in columns))
    for label, fn in (("min", np.min), ("median", np.median)):
        cells = []
        for c in columns:
            values = [r[c] for r in rows.values() if c in r]
            cells.append(f"{fn(values):>13.2f}x" if values else f"{'':>14}")
        lines.append(f"{label:<{width}}" + "".join(cells))
    return "\n".join(lines)


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the OS (Linux/glibc only).

    A loader holds a micro-batch of outputs, then frees them; with glibc's default
    thresholds the freed megabytes go back to the OS and the next batch's outputs are
    fresh pages, whose first-touch page faults cost more than most kernels (about 4 us
    per 4 KiB page on the machine this was written on), for both libraries alike. With
    the memory kept, the table shows the kernels. Same effect as starting Python with
    ``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_MMAP_THRESHOLD_`` set high.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_trim_threshold, 1 << 30)) and bool(libc.mallopt(m_mmap_threshold, 1 << 28))


def main() -> None:
    global BATCH, MAIN_PROCESS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,1024", help="square edge lengths, comma-separated")
    parser.add_argument("--dtypes", default="uint8,float32")
    parser.add_argument("--rounds", type=int, default=5, help="alternating passes per contestant")
    parser.add_argument("--pass-ms", type=float, default=60.0, help="target length of one pass")
    parser.add_argument("--only", default="", help="comma-separated transform names (default: all)")
    parser.add_argument("--batch", type=int, default=BATCH, help="outputs held at once (a loader's micro-batch)")
    parser.add_argument("--skip-pipeline", action="store_true", help="leave out the seed README pipeline")
    parser.add_argument("--fresh-memory", action="store_true",
                        help="leave glibc's allocator at its defaults (outputs land on fresh pages)")
    parser.add_argument("--main-process", action="store_true",
                        help="fetch as num_workers=0 does (training RNG saved and restored per micro-batch)")
    args = parser.parse_args()
    BATCH, MAIN_PROCESS = args.batch, args.main_process
    memory = "glibc defaults" if args.fresh_memory or not keep_freed_memory() else "freed memory kept for reuse"
    warnings.filterwarnings("ignore", module="albumentations")
    cv2.setNumThreads(0)
    only = {n for n in args.only.split(",") if n}
    cases = [c for c in CASES if not only or c.name in only]
    columns = [f"{s} {d}" for d in args.dtypes.split(",") for s in args.sizes.split(",")]
    print(f"engine.transforms vs albumentations {A.__version__}, cv2 {cv2.__version__}, 1 thread, "
          f"{args.rounds} alternating rounds, micro-batch {BATCH}, {memory}, CPU time, "
          f"{'main process (RNG snapshot per micro-batch)' if MAIN_PROCESS else 'as a loader worker'};\n"
          f"ratio of median img/s (engine / albumentations, > 1: engine faster)")
    rows: Dict[str, Dict[str, float]] = {c.name: {} for c in cases}
    rates: Dict[str, Tuple[float, float]] = {}
    for column in columns:
        size, dtype = column.split()
        samples = Samples(int(size), dtype)
        for case in cases:
            if dtype != "uint8" and case.uint8_only:
                continue
            calls = calls_for(args.pass_ms, lambda n: engine_pass([case.engine], samples, case.spatial, n))
            ours, theirs = race(engine_pass([case.engine], samples, case.spatial, calls),
                                albu_pass([case.albu(int(size))], samples, case.spatial, calls), calls, args.rounds)
            rows[case.name][column] = ours / theirs
            if column == "512 uint8":
                rates[case.name] = ours, theirs
        print(f"  done {column}", flush=True)
    if rows:
        print()
        print(table(rows, columns))
    if rates:
        print("\n512 x 512 uint8, images/s (median)")
        for name, (ours, theirs) in rates.items():
            print(f"  {name:<26}{ours:>9.0f} engine{theirs:>9.0f} albumentations")
    print("n/a: engine takes uint8 only there (albumentations converts float32 to uint8 and back)")
    if not args.skip_pipeline:
        samples = Samples(512, "uint8")
        calls = max(calls_for(args.pass_ms * 4, lambda n: engine_pass(SEED_README_TRAIN, samples, False, n)), 32)
        ours, theirs = race(engine_pass(SEED_README_TRAIN, samples, False, calls),
                            albu_pass(albu_seed_readme(), samples, False, calls), calls, args.rounds)
        print(f"\nseed README pipeline (flip p=.5 -> resize 256 -> color jitter, all sub-ops), 512x512 uint8, "
              f"{calls} images/pass:\n  engine {ours:.0f} img/s, albumentations {theirs:.0f} img/s, "
              f"{ours / theirs:.2f}x")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)")
