"""Arguments of the Python API and the commands: checked by name, thresholds given once, options
that have no effect on a detections file refused."""
import numpy as np
import pytest
from PIL import Image

from sppdet.errors import UserError

from .makers import _detect


def test_detect_threshold_precedence_and_eval_set(shared_run, tmp_path):
    import sppdet
    from sppdet.cli import build_parser

    d, det, imgs = shared_run
    # --set test.score_thresh is not overridden by --threshold's default; both at once are refused
    low = _detect(det, [imgs[0]], tmp_path / "a", threshold=None, overrides=["test.score_thresh=0"])
    assert low["detections"] == _detect(det, [imgs[0]], tmp_path / "b", threshold=0.0)["detections"] > 0
    with pytest.raises(UserError, match="threshold once"):
        _detect(det, [imgs[0]], tmp_path / "c", threshold=0.0, overrides=["test.score_thresh=0"])
    args = build_parser().parse_args(["detect", "RUN", "x.jpg", "--out", "o", "--set", "test.score_thresh=-5"])
    assert args.threshold is None
    # eval of a detections file: --set has no effect there, so it is refused (valid or not)
    rows = tmp_path / "a" / "detections.json"
    for s in (["test.nms=0.4"], ["bogus.key=1"]):
        with pytest.raises(UserError, match="no effect on a detections file"):
            sppdet.evaluate(data=d / "data", split="test", detections=rows, overrides=s)
    for kw, name in (({"device": "cpu"}, "--device"), ({"cache": d / "cache"}, "--cache"), ({"workers": 2}, "--workers")):
        with pytest.raises(UserError, match=f"{name} has no effect on a detections file"):
            sppdet.evaluate(data=d / "data", split="test", detections=rows, **kw)
    with pytest.raises(UserError, match="--similar only applies"):
        sppdet.evaluate(data=d / "data", split="test", detections=rows, similar=[["a", "b"]])
    from sppdet.cli import cmd_eval

    args = build_parser().parse_args(["eval", "--detections", str(rows), "--data", str(d / "data"), "--gallery", "3"])
    with pytest.raises(UserError, match="--gallery only applies"):
        cmd_eval(args)
    with pytest.raises(UserError, match="bogus"):  # a run: invalid keys refused
        sppdet.evaluate(det, data=d / "data", split="test", out=tmp_path / "e", overrides=["bogus.key=1"])


def test_api_arguments_are_checked_by_name(shared_run, tmp_path):
    import sppdet

    d, det, imgs = shared_run
    image = np.asarray(Image.open(imgs[0]).convert("RGB"))
    cases = [
        (lambda: sppdet.load(123), "run must be a path"),
        (lambda: sppdet.load(None), "run must be a path"),
        (lambda: sppdet.detect(det, None, tmp_path / "o"), "inputs must be"),
        (lambda: sppdet.detect(det, [imgs[0], None], tmp_path / "o"), "inputs must be"),
        (lambda: sppdet.detect(det, 3, tmp_path / "o"), "inputs must be"),
        (lambda: sppdet.detect(det, [imgs[0]], None), "out must be a path"),
        (lambda: sppdet.detect(det, [imgs[0]], tmp_path / "o", threshold="0.5"), "threshold must be a finite"),
        (lambda: sppdet.evaluate(det, data=None, out=tmp_path / "e"), "data must be a path"),
        (lambda: sppdet.evaluate(det, data=d / "data", split=None, out=tmp_path / "e"), "split must be"),
        (lambda: sppdet.evaluate(det, data=d / "data", gallery="3", out=tmp_path / "e"), "gallery must be"),
        (lambda: sppdet.evaluate(det, data=d / "data", similar="ab", out=tmp_path / "e"), "similar must be"),
        (lambda: sppdet.train(None, tmp_path / "r"), "data must be a path"),
        (lambda: sppdet.train(d / "data", None), "out must be a path"),
        (lambda: sppdet.make_config(None, overrides=[1]), "overrides must be a list"),
        (lambda: det(image, proposals=np.zeros((5, 3))), "proposals must be an \\[N, 4\\]"),
        (lambda: det(image, proposals=np.array([[0, 0, np.nan, 5]])), "NaN or infinite"),
        (lambda: det(image, proposals="boxes"), "proposals must be"),
        (lambda: det([image, image], proposals=np.zeros((1, 4))), "belongs to one image"),
        (lambda: det(image, proposals=np.array([[10.0, 10, 5, 5]])), "inverted"),
        (lambda: sppdet.detect(det, [imgs[0]], tmp_path / "o", ray=5), "ray must be"),
        (lambda: sppdet.detect(det, [imgs[0]], tmp_path / "o", workers="2"), "workers must be a whole number"),
        (lambda: sppdet.evaluate(det, data=d / "data", cache=3, out=tmp_path / "e"), "cache must be a path"),
        (lambda: sppdet.load_data(d / "data", "test", classes="cat"), "classes must be a list"),
        (lambda: sppdet.bench(d / "data", images="3", out=tmp_path / "b"), "images .--images. must be"),
    ]
    for call, message in cases:
        with pytest.raises(UserError, match=message):
            call()
    # a bare string is one override, never its characters
    assert sppdet.make_config(None, overrides="test.nms=0.4").test.nms == 0.4
    with pytest.raises(UserError, match="test.nmz"):
        sppdet.make_config(None, overrides="test.nmz=0.4")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
