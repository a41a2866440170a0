"""Building pipelines from config: registry names, error paths, composition, dataset hand-off."""

import pickle
import subprocess
import sys

import numpy as np
import pytest

import engine.transforms as T
from engine.errors import ConfigError, RegistryError
from engine.transforms.build import build_transforms
from engine.transforms.registry import BUILD_TRANSFORMER_REGISTRY

SEED_NAMES = {
    "RandomBrightness", "RandomContrast", "RandomSaturation", "RandomHue", "RandomGamma", "RandomCLAHE",
    "RandomCompress", "RandomSharpen", "RandomToneCurve", "RandomBrightnessContrast", "RandomGaussianBlur",
    "ToGray", "Normalize", "RandomColorJitter", "RandomAffine", "RandomFlip", "Resize", "RandomResize",
    "RandomCrop", "Pad32", "MosaicTransform", "Compose", "OneOf", "RandomChoice",
}

# The seed README's dataloader section, verbatim.
SEED_TRAIN = [
    dict(name="RandomFlip", direction=["horizontal", "vertical", "diagonal"], p=0.5),
    dict(name="Resize", target_size=256, interpolation="INTER_LINEAR", keep_ratio=False, clip_border=True),
    dict(name="RandomColorJitter", brightness_limit=[0.6, 1.2], brightness_p=0.6, contrast_limit=[0.6, 1.4],
         contrast_p=0.6, saturation_limit=[0.6, 1.4], saturation_p=0.5, hue_limit=[-0.1, 0.1], hue_p=0.05,
         blur_limit=[3, 7], blur_p=0.2, gamma_limit=[0.3, 3.0], gamma_p=0.1),
]


class Tag(T.BaseTransform):
    """Appends its name to results['seen'] (for checking what ran)."""

    def __init__(self, tag, p=1.0):
        super().__init__(p)
        self.tag = tag

    def transform(self, results):
        results.setdefault("seen", []).append(self.tag)
        return results


class FakeDataset:
    def __len__(self):
        return 3

    def get_results(self, index):
        img = np.full((20, 30, 3), 50 * index, np.uint8)
        return dict(img=img, img_fields=["img"], color_fields=["img"])


def test_every_seed_transform_is_registered():
    assert SEED_NAMES <= set(BUILD_TRANSFORMER_REGISTRY.names())


def test_seed_readme_pipeline_builds_and_runs():
    pipe = build_transforms(SEED_TRAIN, where="dataloader.train_data_set.transformer")
    img = np.random.RandomState(0).randint(0, 256, (300, 200, 3)).astype(np.uint8)
    np.random.seed(0)
    out = pipe(dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2], img_fields=["img"],
                    color_fields=["img"]))
    assert out["img"].shape == (256, 256, 3) and out["img"].dtype == np.uint8
    assert out["img_shape"] == (256, 256) and out["ori_shape"] == (300, 200)


def test_errors_name_the_config_path():
    where = "dataloader.train_data_set.transformer"
    with pytest.raises(ConfigError, match=r"transformer\[1\]: RandomFlip: p=2 is invalid; expected a number in"):
        build_transforms([dict(name="Pad32"), dict(name="RandomFlip", p=2)], where=where)
    with pytest.raises(ConfigError, match=r"transformer\[0\]: RandomFlip: direction='diag' is invalid; "
                                          r"expected one of \['horizontal', 'vertical', 'diagonal'\]"):
        build_transforms([dict(name="RandomFlip", direction="diag")], where=where)
    with pytest.raises(ConfigError, match=r"transformer\[0\]: Resize: interpolation='INTER_BILINEAR'.*INTER_LINEAR"):
        build_transforms([dict(name="Resize", target_size=8, interpolation="INTER_BILINEAR")], where=where)
    with pytest.raises(ConfigError, match=r"transformer\[0\]: unexpected parameter 'directon'.*Did you mean "
                                          r"'direction'"):
        build_transforms([dict(name="RandomFlip", directon="vertical")], where=where)
    with pytest.raises(ConfigError, match=r"transformer\[0\]: missing required parameter\(s\) 'target_size'"):
        build_transforms([dict(name="Resize")], where=where)
    with pytest.raises(RegistryError, match=r"transformer\[0\]\.name: .*'RandomFlp'.*Did you mean 'RandomFlip'"):
        build_transforms([dict(name="RandomFlp")], where=where)
    with pytest.raises(ConfigError, match=r"transformer\[0\]\.transforms\[1\]: RandomHue: hue_limit=\(0\.5, 0\.1\)"):
        build_transforms([dict(name="OneOf", transforms=[dict(name="ToGray"), dict(name="RandomHue",
                                                                                   hue_limit=(0.5, 0.1))])],
                         where=where)
    with pytest.raises(ConfigError, match="expected a list of transform dicts"):
        build_transforms(dict(name="Pad32"), where=where)
    with pytest.raises(ConfigError, match=r"transformer\[0\]: expected dict\(name=<transform>"):
        build_transforms(["Pad32"], where=where)


def test_config_checks_for_spatial_parameters():
    cases = [
        (lambda: T.Resize(target_size=-3), r"Resize: target_size=-3.*positive int"),
        (lambda: T.RandomAffine(scaling_ratio_range=(1.5, 0.5)), r"scaling_ratio_range.*low <= high"),
        (lambda: T.RandomAffine(max_translate_ratio=2), r"max_translate_ratio=2"),
        (lambda: T.RandomCrop(min_crop_ratio=0.5, max_crop_ratio=0.2), r"max_crop_ratio=0\.2.*\[0\.5"),
        (lambda: T.RandomResize(max_edge_length=[300], padding_size=256), r"max_edge_length=300.*\[1, 256\]"),
        (lambda: T.MosaicTransform(dataset=FakeDataset(), n=5), r"n=5.*\[3, 4, 9\]"),
        (lambda: T.MosaicTransform(), r"MosaicTransform: dataset=None.*get_results"),
        (lambda: T.OneOf(transforms=T.ToGray()), r"OneOf: transforms=ToGray\(p=1\.0\)"),
        (lambda: T.RandomChoice([T.ToGray()], weights=[1, 2]), r"RandomChoice: weights=\[1, 2\].*1 non-negative"),
    ]
    for make, pattern in cases:
        with pytest.raises(ConfigError, match=pattern):
            make()


def test_dataset_goes_only_to_transforms_that_take_it():
    ds = FakeDataset()
    pipe = build_transforms([dict(name="RandomFlip"),
                             dict(name="OneOf", p=1.0, transforms=[dict(name="MosaicTransform", max_size=60)])],
                            dataset=ds)
    assert pipe.transforms[1].transforms[0].dataset is ds
    with pytest.raises(ConfigError, match=r"transformer\[0\]: MosaicTransform: dataset=None"):
        build_transforms([dict(name="MosaicTransform")])


def test_compose_runs_in_order_and_none_drops_the_sample():
    pipe = T.Compose([Tag("a"), Tag("b"), dict(name="Pad32")])
    out = pipe(dict(img=np.zeros((3, 3), np.uint8), img_fields=["img"]))
    assert out["seen"] == ["a", "b"] and out["img"].shape == (32, 32)
    assert T.Compose([Tag("a"), lambda r: None, Tag("c")])({}) is None


def test_one_of_applies_exactly_one_weighted_by_child_p_and_forces_it():
    t = T.OneOf([Tag("x", p=0.1), Tag("y", p=0.3)], p=1.0)
    np.random.seed(0)
    seen = [t({})["seen"] for _ in range(400)]
    assert all(len(s) == 1 for s in seen), "exactly one child, forced even though its p < 1"
    share_y = sum(s == ["y"] for s in seen) / len(seen)
    assert 0.68 < share_y < 0.82
    np.random.seed(0)
    assert sum("seen" in T.OneOf([Tag("x")], p=0.25)({}) for _ in range(400)) in range(70, 131)


def test_random_choice_keeps_child_gates():
    t = T.RandomChoice([Tag("x", p=0.0), Tag("y", p=1.0)], weights=[1, 3])
    np.random.seed(1)
    outs = [t({}).get("seen") for _ in range(400)]
    assert 0.68 < sum(o == ["y"] for o in outs) / 400 < 0.82
    assert all(o in (None, ["y"]) for o in outs), "x was picked sometimes but its p=0 gate held"


def test_built_pipeline_pickles_for_worker_processes():
    pipe = build_transforms(SEED_TRAIN + [dict(name="MosaicTransform", max_size=64), dict(name="Normalize")],
                            dataset=FakeDataset())
    clone = pickle.loads(pickle.dumps(pipe))
    sample = FakeDataset().get_results(1)
    np.random.seed(3)
    a = pipe(dict(sample))
    np.random.seed(3)
    b = clone(dict(sample))
    np.testing.assert_array_equal(a["img"], b["img"])


def test_transforms_draw_only_from_numpy_global_rng():
    """The loader seeds numpy per sample; python's random and torch's RNG must not matter."""
    import random
    import torch

    pipe = build_transforms(SEED_TRAIN + [dict(name="RandomAffine", rotate_degree_range=20, max_shear_degree=3),
                                          dict(name="RandomCrop", min_crop_ratio=0.0, max_crop_ratio=0.2),
                                          dict(name="MosaicTransform", max_size=64)], dataset=FakeDataset())
    outs = []
    for other in (1, 2):
        random.seed(other)
        torch.manual_seed(other)
        np.random.seed(7)
        outs.append(pipe(FakeDataset().get_results(2))["img"])
    np.testing.assert_array_equal(*outs)


def test_package_imports_neither_deepspeed_nor_trainer():
    code = ("import sys, engine.transforms, engine.transforms.functional; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'deepspeed' or "
            "m.startswith(('engine.trainer', 'engine.model', 'engine.schedule'))]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
