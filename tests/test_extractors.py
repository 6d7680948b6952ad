"""The extractor registry: each config method builds a class that has the whole protocol, and
nothing outside the registry asks which extractor it holds."""
import subprocess
from pathlib import Path

from sppdet.backbones import build_trunk
from sppdet.config import Config
from sppdet.extractors import EXTRACTORS, Extractor, make_extractor

PROTOCOL = [n for n in dir(Extractor) if not n.startswith("_")] + list(Extractor.__annotations__)


def test_every_method_builds_an_extractor_with_the_whole_protocol():
    trunk = build_trunk("mobilenet_v2", pretrained=False)
    for method in EXTRACTORS:
        cfg = Config(method=method)
        ext = make_extractor(cfg.method, cfg.features, trunk, "cpu")
        assert ext.method == method
        missing = [n for n in PROTOCOL if not hasattr(ext, n)]
        assert missing == [], (method, missing)
    assert set(EXTRACTORS) == set(Config.__dataclass_fields__["method"].metadata["rule"].choices)


def test_no_module_branches_on_the_extractor_type():
    pkg = Path(__file__).resolve().parents[1] / "sppdet"
    hits = subprocess.run(["grep", "-rnE", r"isinstance\(.*Extractor", str(pkg)], capture_output=True, text=True).stdout
    assert hits == ""
