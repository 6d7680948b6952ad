"""fc6/fc7 from torchvision's classifier (SPP-net's ftfc7 starts from pretrained fc layers):
the loaded head must compute exactly what torchvision's classifier computes on the same map."""
import numpy as np
import pytest
import torch
import torchvision

from sppdet.backbones import build_trunk, pretrained_fc_layers
from sppdet.config import load_config
from sppdet.errors import UserError
from sppdet.features import FeatureExtractor
from sppdet.heads import FCHead, head_from_config
from sppdet.ops import spp_pool


@pytest.fixture(scope="module")
def alexnet_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = torchvision.models.alexnet().eval()
    path = tmp_path_factory.mktemp("w") / "alexnet.pth"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.mark.parametrize("channels_last", [True, False])
def test_alexnet_head_equals_torchvision_classifier(alexnet_weights, channels_last):
    model, path = alexnet_weights
    cfg = load_config(None, ["backbone.name=alexnet", f"backbone.weights={path}", "finetune.enabled=true",
                             "features.levels=[6]"])
    trunk = build_trunk("alexnet", str(path))
    ext = FeatureExtractor(trunk, levels=cfg.features.levels, channels_last=channels_last)
    head = head_from_config(cfg, ext, num_classes=3).eval()
    assert head.fc6.in_features == 256 * 36 and head.fc6.out_features == head.fc7.out_features == 4096

    # a 6x6 map: one SPP bin and one adaptive-avgpool cell per map cell, so both routes see the
    # same numbers; a window of exactly 6x6 cells inside a larger map must match its crop
    torch.manual_seed(1)
    big = torch.relu(torch.randn(256, 9, 11))
    crop = big[:, 2:8, 3:9]
    ours = head.features(spp_pool(big, torch.tensor([[3, 2, 8, 7]]), ext.levels, channels_last=channels_last))
    with torch.no_grad():
        x = torch.flatten(model.avgpool(crop.unsqueeze(0)), 1)
        ref = torch.relu(model.classifier[:5](x))  # dropout, fc6, relu, dropout, fc7 (eval), relu
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    # and the whole-map route the R-CNN baseline uses
    ours_map = head.features(spp_pool(crop, None, ext.levels, channels_last=channels_last))
    torch.testing.assert_close(ours_map, ref, rtol=1e-4, atol=1e-5)


def test_alexnet_head_loads_classifier_tensors(alexnet_weights):
    model, path = alexnet_weights
    n, fc = pretrained_fc_layers("alexnet", str(path))
    assert n == 6
    assert torch.equal(fc["fc6.weight"], model.classifier[1].weight)
    assert torch.equal(fc["fc7.weight"], model.classifier[4].weight)
    assert torch.equal(fc["fc7.bias"], model.classifier[4].bias)


@pytest.mark.slow
def test_vgg16_fc6_fc7_are_the_classifier_tensors(tmp_path):
    torch.manual_seed(0)
    sd = torchvision.models.vgg16().state_dict()
    path = tmp_path / "vgg16.pth"
    torch.save(sd, path)
    del sd
    cfg = load_config(None, ["backbone.name=vgg16", f"backbone.weights={path}", "finetune.enabled=true",
                             "features.levels=[7]"])
    ref = torch.load(path, weights_only=True)
    ext = FeatureExtractor(build_trunk("vgg16", str(path)), levels=[7], channels_last=False)
    head = head_from_config(cfg, ext, num_classes=2)
    assert torch.equal(head.fc6.weight, ref["classifier.0.weight"])  # [C, 7, 7] order: no permutation
    assert torch.equal(head.fc6.bias, ref["classifier.0.bias"])
    assert torch.equal(head.fc7.weight, ref["classifier.3.weight"])
    assert torch.equal(head.fc7.bias, ref["classifier.3.bias"])
    # channels-last vectors read the same weights, permuted: column (i, j, c) = torchvision (c, i, j)
    ext_cl = FeatureExtractor(ext.trunk, levels=[7], channels_last=True)
    w = head_from_config(cfg, ext_cl, num_classes=2).fc6.weight
    c, i, j = 17, 3, 5
    assert torch.equal(w[:, (i * 7 + j) * 512 + c], ref["classifier.0.weight"][:, c * 49 + i * 7 + j])


def test_levels_must_match_the_classifier(alexnet_weights):
    _, path = alexnet_weights
    with pytest.raises(UserError, match=r"features.levels=\[6\]"):
        load_config(None, ["backbone.name=alexnet", "finetune.enabled=true"])  # default {6,3,2,1}
    # opting out, or not fine-tuning, keeps any pyramid
    load_config(None, ["backbone.name=alexnet", "finetune.enabled=true", "finetune.pretrained_fc=false"])
    load_config(None, ["backbone.name=vgg16"])


def test_trunk_only_state_dict_is_refused(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "trunk.pth"
    torch.save(torchvision.models.alexnet().features[:12].state_dict(), path)
    with pytest.raises(UserError, match="classifier.1.weight"):
        pretrained_fc_layers("alexnet", str(path))


def test_other_trunks_learn_fc_from_scratch(random_weights):
    cfg = load_config(None, ["finetune.enabled=true", f"backbone.weights={random_weights}",
                             "finetune.hidden=64"])
    ext = FeatureExtractor(build_trunk("mobilenet_v2", str(random_weights)))
    head = head_from_config(cfg, ext, num_classes=2)
    assert isinstance(head, FCHead) and head.fc6.out_features == 64 and head.fc6.in_features == ext.dim
    assert pretrained_fc_layers("mobilenet_v2") is None
    assert np.isfinite(head.fc6.weight.detach().numpy()).all()


def test_vgg16_recipe_config_loads():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "voc07_vgg16_ftfc7.yaml")
    assert cfg.backbone.name == "vgg16" and cfg.features.levels == [7]
    assert cfg.finetune.enabled and cfg.finetune.pretrained_fc
