"""Perceptual loss: the distance between VGG19 features of pred and target.

Pixel losses average over plausible outputs and blur them; comparing the activations of
a network trained on ImageNet rewards matching textures and edges instead (Johnson et
al., 2016). The VGG19 ``features`` stack is written out here with torchvision's layer
indices, so a torchvision state dict (``features.0.weight``, ...) loads as is, without
depending on torchvision. Weights are never downloaded: clusters are often offline, and
a download inside the first training step of every rank is a bad surprise anyway.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.errors import ConfigError
from engine.loss.base import LossInputError, WeightedLoss, expect_same_shape, shape_str
from engine.loss.build import LOSS_ARCH_REGISTRY
from engine.utils.suggest import did_you_mean

# Convolution widths of VGG19 (configuration "E"); "M" is a 2x2 max pool.
_VGG19_WIDTHS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_features() -> Tuple[nn.Sequential, Dict[str, int]]:
    """VGG19's ``features`` (torchvision indexing) and a map layer name -> index.

    Names follow the paper: ``conv3_2`` is the second convolution of block 3, ``relu3_2``
    its activation, ``pool3`` the pooling that ends the block.
    """
    layers: List[nn.Module] = []
    names: Dict[str, int] = {}
    channels, block, conv = 3, 1, 1
    for width in _VGG19_WIDTHS:
        if width == "M":
            names[f"pool{block}"] = len(layers)
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            block, conv = block + 1, 1
            continue
        names[f"conv{block}_{conv}"] = len(layers)
        layers.append(nn.Conv2d(channels, width, kernel_size=3, padding=1))
        names[f"relu{block}_{conv}"] = len(layers)
        # not in place (torchvision's are): a conv output taken as a feature must not be
        # overwritten by the activation that follows it
        layers.append(nn.ReLU(inplace=False))
        channels, conv = width, conv + 1
    return nn.Sequential(*layers), names


class _VGG19(nn.Module):
    """Holds ``features`` under that attribute so state-dict keys match torchvision's."""

    def __init__(self) -> None:
        super().__init__()
        self.features, self.layer_index = vgg19_features()


def load_vgg19_weights(vgg: nn.Module, path: str) -> None:
    """Load a torchvision-format VGG19 state dict (classifier keys, if any, are ignored)."""
    if not os.path.isfile(path):
        raise ConfigError(f"VggLoss: weights_path {path!r} does not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    if not features:  # a state dict of the features stack alone
        features = {f"features.{k}": v for k, v in state.items()}
    expected = set(vgg.state_dict())
    missing = sorted(expected - set(features))
    unexpected = sorted(set(features) - expected)
    if missing or unexpected:
        raise ConfigError(
            f"VggLoss: {path!r} is not a torchvision VGG19 state dict: "
            f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
            f"unexpected {unexpected[:4]}{'...' if len(unexpected) > 4 else ''}"
        )
    for key, value in features.items():
        if value.shape != vgg.state_dict()[key].shape:
            raise ConfigError(f"VggLoss: {path!r}: {key} has shape {tuple(value.shape)}, "
                              f"expected {tuple(vgg.state_dict()[key].shape)} (VGG19)")
    vgg.load_state_dict(features)


@LOSS_ARCH_REGISTRY.register()
class VggLoss(WeightedLoss):
    """Weighted sum over VGG19 layers of ``criterion(features(pred), features(target))``.

    pred, target: (N, 3, H, W) RGB images with values in ``input_range``. The target's
    features are computed without gradient; the VGG weights are frozen.

    Args:
        weights_path: a torchvision VGG19 state dict (``.pth`` or ``.safetensors``), e.g.
            ``vgg19-dcbb9e9d.pth`` fetched once by hand; required.
        layers: the layers compared, by name: ``conv{b}_{i}``, ``relu{b}_{i}``, ``pool{b}``.
        layer_weights: one weight per layer (default 1.0 each).
        criterion: ``'l1'`` or ``'mse'``.
        input_range: the (low, high) range of the images; they are mapped to [0, 1].
        normalize: subtract the ImageNet mean and divide by its std, as VGG was trained.
        allow_random_init: without ``weights_path``, use random weights (tests only:
            random features make a meaningless loss).
        lambda_weight: factor of the loss.
        vgg_path: the seed's name of ``weights_path``.
        vgg_arch: the seed's form: names the network (only ``'vgg19'`` is built here) and
            selects the seed's comparison, the mean squared error of the whole feature
            stack's output (``pool5``) on the images as given (no ImageNet normalisation),
            in place of ``layers``, ``criterion`` and ``normalize``.
    """

    def __init__(self, weights_path: Optional[str] = None,
                 layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4"),
                 layer_weights: Optional[Sequence[float]] = None, criterion: str = "l1",
                 input_range: Sequence[float] = (0.0, 1.0), normalize: bool = True,
                 allow_random_init: bool = False, lambda_weight: float = 1.0,
                 vgg_path: Optional[str] = None, vgg_arch: Optional[str] = None) -> None:
        super().__init__(lambda_weight)
        if vgg_path is not None:
            if weights_path is not None and weights_path != vgg_path:
                raise ConfigError("VggLoss: weights_path and vgg_path (TrainFramework's name) disagree; set only one of them")
            weights_path = vgg_path
        if vgg_arch is not None:
            if vgg_arch != "vgg19":
                raise ConfigError(f"VggLoss: vgg_arch {vgg_arch!r} is not built by engine, which has VGG19 only "
                                  "(vgg_arch='vgg19' with torchvision VGG19 weights)")
            layers, layer_weights, criterion, normalize = ("pool5",), None, "mse", False
        if weights_path is None and not allow_random_init:
            raise ConfigError(
                "VggLoss needs weights_path: VGG19 weights cannot be downloaded at run time. "
                "Give the path of a torchvision VGG19 state dict (e.g. vgg19-dcbb9e9d.pth, copied "
                "to the machine beforehand); allow_random_init=True is for tests only"
            )
        vgg = _VGG19()
        if isinstance(layers, str):
            layers = [layers]
        unknown = [name for name in layers if name not in vgg.layer_index]
        if not layers or unknown:
            raise ConfigError(
                f"VggLoss: unknown layer(s) {unknown}."
                f"{did_you_mean(unknown[0], vgg.layer_index) if unknown else ''} "
                f"Known: {', '.join(vgg.layer_index)}"
            )
        weights = [1.0] * len(layers) if layer_weights is None else [float(w) for w in layer_weights]
        if len(weights) != len(layers):
            raise ConfigError(f"VggLoss: {len(weights)} layer_weights for {len(layers)} layers")
        if criterion not in ("l1", "mse"):
            raise ConfigError(f"VggLoss: criterion must be 'l1' or 'mse', got {criterion!r}")
        if weights_path is not None:
            load_vgg19_weights(vgg, weights_path)
        self.layers = {vgg.layer_index[name]: (name, w) for name, w in zip(layers, weights)}
        # Only the layers up to the deepest one compared are ever run.
        self.vgg = vgg.features[: max(self.layers) + 1]
        self.vgg.requires_grad_(False).eval()
        self.criterion = F.l1_loss if criterion == "l1" else F.mse_loss
        low, high = (float(v) for v in input_range)
        mean = torch.tensor(IMAGENET_MEAN if normalize else (0.0, 0.0, 0.0)).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD if normalize else (1.0, 1.0, 1.0)).view(1, 3, 1, 1)
        # one affine map: input_range -> [0, 1] -> ImageNet-normalised
        self.register_buffer("scale", 1.0 / ((high - low) * std), persistent=False)
        self.register_buffer("shift", (-low / (high - low) - mean) / std, persistent=False)

    def train(self, mode: bool = True) -> "VggLoss":
        super().train(mode)
        self.vgg.eval()  # a frozen feature extractor; no layer here depends on the mode today
        return self

    def check_inputs(self, pred: Tensor, target: Tensor) -> None:
        expect_same_shape(pred, target, names=self.arguments)
        if pred.dim() != 4 or pred.shape[1] != 3:
            raise LossInputError(f"pred shape {shape_str(pred.shape)}: expected RGB images (N, 3, H, W)")

    def features(self, x: Tensor) -> Dict[int, Tensor]:
        """Activations of the compared layers, by index in ``features``."""
        x = x * self.scale + self.shift
        out = {}
        for index, layer in enumerate(self.vgg):
            x = layer(x)
            if index in self.layers:
                out[index] = x
        return out

    def compute(self, pred: Tensor, target: Tensor) -> Tensor:
        pred_features = self.features(pred)
        with torch.no_grad():
            target_features = self.features(target.detach())
        total = pred.new_zeros(())
        for index, (_, weight) in self.layers.items():
            total = total + weight * self.criterion(pred_features[index], target_features[index])
        return total

    def extra_repr(self) -> str:
        names = ", ".join(name for name, _ in self.layers.values())
        return f"layers=[{names}], {super().extra_repr()}"
