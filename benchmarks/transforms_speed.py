"""Augmentation speed: engine.transforms against albumentations, same images, same process.

Single thread (``cv2.setNumThreads(1)``, as in a data-loader worker), real photos
(scikit-learn's sample images) resized to 512 x 512 uint8, each with 8 boxes and 16
keypoints. Times the typical pipeline (flip + affine + resize + color jitter + normalize)
transform by transform and in total, then a few more single transforms. Every engine
transform runs with probability 1 so each call does the work; albumentations gets the
equivalent operation with the same parameters, wrapped with the same box/keypoint
targets (albumentations is optional: without it only engine's column is printed).

    python benchmarks/transforms_speed.py [--images 32] [--repeats 5]

Prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Callable, List, Optional, Tuple

import cv2
import numpy as np
from sklearn.datasets import load_sample_image

import engine.transforms as T

try:
    import albumentations as A
except ImportError:  # the comparison column is optional
    A = None

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def make_samples(count: int) -> List[dict]:
    rng = np.random.RandomState(0)
    photos = [cv2.resize(load_sample_image(n), (512, 512), interpolation=cv2.INTER_AREA)
              for n in ("china.jpg", "flower.jpg")]
    samples = []
    for i in range(count):
        xy = rng.uniform(20, 300, (8, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(40, 200, (8, 2))], axis=1).astype(np.float32)
        samples.append(dict(img=photos[i % 2], boxes=boxes, labels=np.arange(8),
                            pts=rng.uniform(0, 512, (16, 2)).astype(np.float32)))
    return samples


def engine_results(s: dict) -> dict:
    return dict(img=s["img"], img_fields=["img"], color_fields=["img"], boxes=s["boxes"], bbox_fields=["boxes"],
                pts=s["pts"], pts_fields=["pts"], labels=s["labels"], label_fields={"boxes": ["labels"]})


def engine_steps() -> List[Tuple[str, Callable]]:
    return [
        ("flip", T.RandomFlip(p=1.0, direction="horizontal")),
        ("affine", T.RandomAffine(rotate_degree_range=10, max_translate_ratio=0.1, scaling_ratio_range=(0.9, 1.1),
                                  max_shear_degree=2, border_val=0, min_area_ratio=0.0, min_bbox_size=0,
                                  max_aspect_ratio=1e9)),
        ("resize 384", T.Resize(target_size=384, keep_ratio=False)),
        ("color jitter", T.RandomColorJitter(brightness_p=1.0, contrast_p=1.0, saturation_p=1.0, hue_p=1.0,
                                             hue_limit=0.1, blur_p=0.0, gamma_p=0.0, clahe_p=0.0)),
        ("normalize", T.Normalize(mean=MEAN, std=STD)),
    ]


def albu_steps() -> List[Tuple[str, Callable]]:
    return [
        ("flip", A.HorizontalFlip(p=1.0)),
        ("affine", A.Affine(rotate=(-10, 10), translate_percent=(-0.1, 0.1), scale=(0.9, 1.1), shear=(-2, 2),
                            fill=0, p=1.0)),
        ("resize 384", A.Resize(384, 384)),
        ("color jitter", A.ColorJitter(brightness=(0.8, 1.2), contrast=(0.8, 1.2), saturation=(0.8, 1.2),
                                       hue=(-0.1, 0.1), p=1.0)),
        ("normalize", A.Normalize(mean=[m / 255 for m in MEAN], std=[s / 255 for s in STD], max_pixel_value=255)),
    ]


def engine_singles() -> List[Tuple[str, Callable]]:
    return [
        ("gamma", T.RandomGamma(gamma_limit=(0.8, 1.2), p=1.0)),
        ("gaussian blur 3-7", T.RandomGaussianBlur(blur_limit=(3, 7), sigma_limit=(0.5, 1.5), p=1.0)),
        ("CLAHE", T.RandomCLAHE(clip_limit=4.0, p=1.0)),
        ("jpeg 70-90", T.RandomCompress(quality_lower=70, quality_upper=90, p=1.0)),
        ("sharpen", T.RandomSharpen(p=1.0)),
        ("to gray", T.ToGray(p=1.0)),
        ("tone curve", T.RandomToneCurve(scale=0.1, p=1.0)),
        ("brightness+contrast", T.RandomBrightnessContrast(p=1.0)),
        ("crop 87.5%", T.RandomCrop(min_crop_ratio=0.125, max_crop_ratio=0.125)),
        ("vertical flip", T.RandomFlip(p=1.0, direction="vertical")),
    ]


def albu_singles() -> List[Tuple[str, Callable]]:
    return [
        ("gamma", A.RandomGamma(gamma_limit=(80, 120), p=1.0)),
        ("gaussian blur 3-7", A.GaussianBlur(blur_limit=(3, 7), sigma_limit=(0.5, 1.5), p=1.0)),
        ("CLAHE", A.CLAHE(clip_limit=(1, 4), p=1.0)),
        ("jpeg 70-90", A.ImageCompression(quality_range=(70, 90), p=1.0)),
        ("sharpen", A.Sharpen(p=1.0)),
        ("to gray", A.ToGray(p=1.0)),
        ("tone curve", A.RandomToneCurve(scale=0.1, p=1.0)),
        ("brightness+contrast", A.RandomBrightnessContrast(p=1.0)),
        ("crop 87.5%", A.RandomCrop(448, 448)),
        ("vertical flip", A.VerticalFlip(p=1.0)),
    ]


def albu_compose(transforms: list) -> Optional[Callable]:
    if not A:
        return None
    return A.Compose(transforms, bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
                     keypoint_params=A.KeypointParams(format="xy", remove_invisible=False), seed=0)


def _engine_pass(transform: Callable, samples: List[dict]) -> float:
    start = time.perf_counter()
    for s in samples:  # the results dict is built per call, as albumentations builds its kwargs
        transform(engine_results(s))
    return time.perf_counter() - start


def _albu_pass(transform: Callable, samples: List[dict]) -> float:
    start = time.perf_counter()
    for s in samples:
        transform(image=s["img"], bboxes=s["boxes"], labels=s["labels"], keypoints=s["pts"])
    return time.perf_counter() - start


def measure(ours: Callable, theirs: Optional[Callable], samples: List[dict],
            repeats: int) -> Tuple[float, Optional[float]]:
    """Best-of-``repeats`` milliseconds per image for both, passes interleaved.

    The best pass is the one least disturbed by other processes; interleaving makes both
    libraries see the same machine load.
    """
    best_ours, best_theirs = np.inf, np.inf
    _engine_pass(ours, samples[:2])  # warm-up (first-call allocations, lazy imports)
    if theirs is not None:
        _albu_pass(theirs, samples[:2])
    for _ in range(repeats):
        best_ours = min(best_ours, _engine_pass(ours, samples))
        if theirs is not None:
            best_theirs = min(best_theirs, _albu_pass(theirs, samples))
    per_image = 1000 / len(samples)
    return best_ours * per_image, (best_theirs * per_image if theirs is not None else None)


def staged_inputs(steps: List[Tuple[str, Callable]], samples: List[dict]) -> List[List[dict]]:
    """The input each pipeline step sees (its predecessors applied), so single steps are timed in place."""
    stages, current = [], [engine_results(s) for s in samples]
    for _, t in steps:
        stages.append([dict(img=r["img"], boxes=r["boxes"], pts=r["pts"], labels=r["labels"]) for r in current])
        current = [t(dict(r)) for r in current]
    return stages


def row(name: str, ours: float, theirs: Optional[float]) -> str:
    if theirs is None:
        return f"{name:<22}{ours:>10.3f}{1000 / ours:>10.0f}"
    return f"{name:<22}{ours:>10.3f}{1000 / ours:>10.0f}{theirs:>12.3f}{1000 / theirs:>10.0f}{theirs / ours:>9.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    # albumentations warns that single transforms leave its box/keypoint processors idle.
    warnings.filterwarnings("ignore", module="albumentations")
    cv2.setNumThreads(1)
    np.random.seed(0)
    samples = make_samples(args.images)
    print(f"engine.transforms vs {'albumentations ' + A.__version__ if A else 'nothing (albumentations missing)'}, "
          f"cv2 {cv2.__version__}, {args.images} images 512x512x3 uint8, 8 boxes + 16 keypoints each, 1 thread, "
          f"best of {args.repeats}")
    header = f"{'transform':<22}{'ms/img':>10}{'img/s':>10}"
    if A:
        header += f"{'albu ms/img':>12}{'img/s':>10}{'speedup':>10}"
    print(header)
    ours_steps = engine_steps()
    stages = staged_inputs(ours_steps, samples)
    theirs_steps = albu_steps() if A else [(n, None) for n, _ in ours_steps]
    ratios = []

    def report(name: str, ours: Callable, theirs: Optional[Callable], inputs: List[dict]) -> None:
        t_ours, t_theirs = measure(ours, albu_compose(theirs) if A else None, inputs, args.repeats)
        if A:
            ratios.append(t_theirs / t_ours)
        print(row(name, t_ours, t_theirs))

    for (name, ours), (_, theirs), inputs in zip(ours_steps, theirs_steps, stages):
        report(name, ours, [theirs], inputs)
    report("PIPELINE total", T.Compose([t for _, t in ours_steps]), [t for _, t in theirs_steps], samples)
    if A:
        ratios.pop()  # the median below is over single transforms
    print("-- single transforms on the 512x512 input --")
    theirs_singles = albu_singles() if A else [(n, None) for n, _ in engine_singles()]
    for (name, ours), (_, theirs) in zip(engine_singles(), theirs_singles):
        report(name, ours, [theirs], samples)
    if A:
        print(f"median speedup over albumentations (per transform): {np.median(ratios):.2f}x, "
              f"min {min(ratios):.2f}x")


if __name__ == "__main__":
    main()
