"""Augmentation benchmark (issue 4's ``benchmarks/augment.py``): engine.transforms vs albumentations.

Two parts, same process, same images (scikit-learn's sample photos at 512 x 512, 8 boxes
and 16 keypoints each), single thread:

1. ``benchmarks/transforms_speed.py``: per transform and a typical detection pipeline,
   every transform at probability 1 (imported and run as is, not copied here).
2. The seed README's training pipeline ("1. 数据配置"), with its own probabilities, built
   from the config dicts exactly as a user writes them::

       RandomFlip(direction=['horizontal', 'vertical', 'diagonal'], p=0.5)
       Resize(target_size=256, interpolation='INTER_LINEAR', keep_ratio=False, clip_border=True)
       RandomColorJitter(brightness 0.6-1.2 p.6, contrast 0.6-1.4 p.6, saturation 0.6-1.4 p.5,
                         hue +-0.1 p.05, blur 3-7 p.2, gamma 0.3-3.0 p.1, CLAHE 4.0 p.2 (default))

   against the closest albumentations pipeline: OneOf(h/v/both flips, p=0.5), Resize 256
   (linear), then one ColorJitter per sub-op with the same factor range and probability,
   GaussianBlur, RandomGamma and CLAHE. engine's jitter applies its sub-ops in random order,
   albumentations' in a fixed one (same work per image). Both pipelines are random, so the
   number is an average over many draws: the RNGs are reseeded before every pass, so both
   sides see the same sequence of draws on every pass.

    python benchmarks/augment.py [--images 32] [--repeats 5] [--pipeline-images 128] [--skip-singles]

Prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import warnings
from typing import Callable, List, Optional

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import transforms_speed as speed  # noqa: E402  (the per-transform benchmark, reused)

from engine.transforms.build import build_transforms  # noqa: E402

A = speed.A

#: the seed README's training transformer list, verbatim
SEED_README_TRAIN = [
    dict(name="RandomFlip", direction=["horizontal", "vertical", "diagonal"], p=0.5),
    dict(name="Resize", target_size=256, interpolation="INTER_LINEAR", keep_ratio=False, clip_border=True),
    dict(name="RandomColorJitter", brightness_limit=[0.6, 1.2], brightness_p=0.6, contrast_limit=[0.6, 1.4],
         contrast_p=0.6, saturation_limit=[0.6, 1.4], saturation_p=0.5, hue_limit=[-0.1, 0.1], hue_p=0.05,
         blur_limit=[3, 7], blur_p=0.2, gamma_limit=[0.3, 3.0], gamma_p=0.1),
]


def albu_seed_readme() -> Optional[Callable]:
    if A is None:
        return None
    return speed.albu_compose([
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
    ])


def time_random_pipeline(ours: Callable, theirs: Optional[Callable], samples: List[dict], repeats: int):
    """Best-of-``repeats`` ms/image, passes interleaved, every pass starting from the same RNG state."""
    def seeded(pass_fn, transform):
        random.seed(0)
        np.random.seed(0)
        if theirs is not None:
            theirs.set_random_seed(0)
        return pass_fn(transform, samples)

    seeded(speed._engine_pass, ours)  # warm-up
    if theirs is not None:
        seeded(speed._albu_pass, theirs)
    best_ours, best_theirs = np.inf, np.inf
    for _ in range(repeats):
        best_ours = min(best_ours, seeded(speed._engine_pass, ours))
        if theirs is not None:
            best_theirs = min(best_theirs, seeded(speed._albu_pass, theirs))
    per_image = 1000 / len(samples)
    return best_ours * per_image, (best_theirs * per_image if theirs is not None else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="images per pass, per-transform part")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pipeline-images", type=int, default=128,
                        help="images per pass for the (random) seed README pipeline")
    parser.add_argument("--skip-singles", action="store_true", help="only the seed README pipeline")
    args = parser.parse_args()
    if not args.skip_singles:
        argv, sys.argv = sys.argv, [speed.__file__, "--images", str(args.images), "--repeats", str(args.repeats)]
        try:
            speed.main()
        finally:
            sys.argv = argv
        print()
    warnings.filterwarnings("ignore", module="albumentations")
    cv2.setNumThreads(1)
    samples = speed.make_samples(args.pipeline_images)
    ours = build_transforms(SEED_README_TRAIN, where="seed README train_data_set.transformer")
    t_ours, t_theirs = time_random_pipeline(ours, albu_seed_readme(), samples, args.repeats)
    print(f"seed README pipeline (flip p=.5 -> resize 256 -> color jitter), 512x512 input, "
          f"{args.pipeline_images} images/pass, best of {args.repeats}, 1 thread")
    header = f"{'transform':<22}{'ms/img':>10}{'img/s':>10}"
    if A:
        header += f"{'albu ms/img':>12}{'img/s':>10}{'speedup':>10}"
    print(header)
    print(speed.row("SEED README total", t_ours, t_theirs))


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)")
