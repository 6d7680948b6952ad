"""The Python API (sppdet.load / train / evaluate / detect, detector(image)) and the file
handling of ``detect``: collisions, resume, interruption, unreadable entries."""
import json
import re
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import sppdet
from sppdet.config import override_config
from sppdet.detector import Detector
from sppdet.errors import UserError
from sppdet.inputs import expand_inputs, output_names

FAST = {"proposals": {"max_boxes": 150, "work_size": 300}, "features": {"scales": [320]},
        "svm": {"retrain_limit": 500}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_run):
    d = tmp_path_factory.mktemp("api")
    return d, tiny_run(d, 12, eval_split="test", **FAST)


def test_train_returns_the_saved_detector_with_its_metrics(trained):
    d, det = trained
    assert isinstance(det, Detector) and det.run_dir == d / "run"
    metrics = json.loads((d / "run" / "eval_test" / "metrics.json").read_text())
    assert det.train_log["eval"]["mAP"] == metrics["mAP"]
    log = json.loads((d / "run" / "train_log.json").read_text())
    assert log["eval"]["mAP"] == metrics["mAP"] and "test detection" in log["timings_s"]
    # keyword settings reached the config that was saved
    assert det.cfg.features.scales == [320] and det.cfg.proposals.max_boxes == 150


def test_evaluate_returns_what_metrics_json_holds(trained, tmp_path):
    d, _ = trained
    m = sppdet.evaluate(d / "run", data=d / "data", split="test", out=tmp_path / "ev", cache=d / "cache")
    on_disk = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert {k: m[k] for k in on_disk} == on_disk
    # the same detector object gives the same numbers as its run directory
    m2 = sppdet.evaluate(sppdet.load(d / "run"), data=d / "data", split="test", out=tmp_path / "ev2",
                         cache=d / "cache")
    assert m2["AP"] == m["AP"]
    # a loaded detector without out= writes beside its run; one with no run directory must be told
    m3 = sppdet.evaluate(sppdet.load(d / "run"), data=d / "data", split="test", cache=d / "cache")
    assert m3["out"] == str(d / "run" / "eval_test") and m3["AP"] == m["AP"]
    orphan = sppdet.load(d / "run")
    orphan.run_dir = None
    with pytest.raises(UserError, match="out="):
        sppdet.evaluate(orphan, data=d / "data", split="test", cache=d / "cache")


def test_eval_cli_analyze_and_coco_results(trained, tmp_path):
    """The CLI's eval --analyze --coco: the report and COCO results land beside the metrics, and
    pycocotools takes the results file as it is."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    from sppdet.evaluation.coco import coco_ground_truth

    d, _ = trained
    r = _cli("eval", d / "run", "--data", d / "data", "--split", "test", "--out", tmp_path / "ev", "--cache",
             d / "cache", "--coco", "--analyze", "--similar", "disc,ring", "--gallery", "2")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ev" / "analysis" / "report.html").is_file()
    ds = sppdet.load_data(d / "data", "test")
    gt = COCO()
    gt.dataset = coco_ground_truth(ds.records, ds.classes)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        res = gt.loadRes(str(tmp_path / "ev" / "coco_results.json"))
    n = len(json.loads((tmp_path / "ev" / "detections.json").read_text()))
    assert len(res.getAnnIds()) == n > 0
    r = _cli("eval", d / "run", "--data", d / "data", "--out", tmp_path / "ev2", "--cache", d / "cache",
             "--analyze", "--similar", "disc,unicorn")
    assert r.returncode == 2 and "unicorn" in r.stderr


def test_detector_call_accepts_every_image_form(trained, one_thread):
    d, _ = trained
    det = sppdet.load(d / "run")
    det.cfg = override_config(det.cfg, ["test.score_thresh=0.0"])  # enough detections to compare
    path = sorted((d / "data" / "JPEGImages").glob("*.jpg"))[0]
    arr = np.array(Image.open(path).convert("RGB"))
    by_path = det(str(path))
    forms = [Image.open(path), arr, torch.from_numpy(arr).permute(2, 0, 1),
             torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0]
    assert len(by_path) > 0 and by_path.path == str(path)
    for form in forms:
        r = det(form)
        np.testing.assert_array_equal(r.boxes, by_path.boxes)
        np.testing.assert_array_equal(r.scores, by_path.scores)
    batch = det([path, arr])
    assert isinstance(batch, list) and len(batch) == 2
    np.testing.assert_array_equal(batch[1].labels, by_path.labels)
    assert by_path.names == det.classes
    assert by_path.class_names == [det.classes[i] for i in by_path.labels]


def test_results_to_dict_and_plot(trained):
    d, _ = trained
    det = sppdet.load(d / "run")
    det.cfg = override_config(det.cfg, ["test.score_thresh=0.0"])
    r = det(sorted((d / "data" / "JPEGImages").glob("*.jpg"))[1])
    t = r.to_dict()
    assert set(t) == {"boxes", "scores", "labels"}
    assert t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.int64
    # torchvision's continuous corners: the inclusive pixel box plus one on the far side
    np.testing.assert_allclose(t["boxes"].numpy(), r.boxes + np.array([0, 0, 1, 1]), rtol=0, atol=1e-4)
    painted = r.plot()
    assert painted.shape == r.image.shape and painted.dtype == np.uint8
    assert (painted != r.image).any() and r.image.sum() == np.asarray(Image.open(r.path).convert("RGB")).sum()


def test_bad_image_objects_are_user_errors(trained):
    d, _ = trained
    det = sppdet.load(d / "run")
    for bad in [np.zeros((5, 5, 7), np.uint8), np.full((8, 8, 3), 2.0), "a string that is no file", 42]:
        with pytest.raises(UserError):
            det(bad)


# -- detect over files ------------------------------------------------------------------------
def _images(root, names):
    rng = np.random.default_rng(1)
    out = []
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def test_output_names_never_collide(tmp_path):
    a, b, c = _images(tmp_path, ["a/x.jpg", "b/x.jpg", "a/x.png"])
    names = output_names([a, b, c])
    assert names == {a: __import__("pathlib").Path("a/x.jpg_det.jpg"),
                     b: __import__("pathlib").Path("b/x_det.jpg"),
                     c: __import__("pathlib").Path("a/x.png_det.jpg")}
    long = tmp_path / ("é" * 126 + ".jpg")  # 252 bytes of name: with the suffix, over 255
    names = output_names([long])
    assert len(names[long].name.encode()) <= 255 and names[long].name.endswith("_det.jpg")


def test_expand_inputs_lists_what_it_skips(tmp_path):
    good, gif = _images(tmp_path / "f", ["good.jpg", "anim.gif"])
    (tmp_path / "f" / "notes.xml").write_text("<a/>")  # not an image: ignored, not an error
    os.symlink(tmp_path / "f" / "missing.jpg", tmp_path / "f" / "dangling.jpg")
    os.symlink(tmp_path / "f" / "loop.jpg", tmp_path / "f" / "loop.jpg")
    os.mkfifo(tmp_path / "f" / "pipe.jpg")
    paths, skipped = expand_inputs([tmp_path / "f", tmp_path / "f" / "good.jpg", tmp_path / "nope.jpg"])
    assert paths == [gif, good]  # sorted, each file once
    text = "\n".join(skipped)
    assert "dangling.jpg: dangling symlink" in text and "loop.jpg: symlink loop" in text
    assert "pipe.jpg: not a regular file" in text and "nope.jpg: not found" in text
    assert len(skipped) == 4


def test_a_folder_that_is_a_data_set_finds_or_names_its_images(tmp_path):
    """A YOLO split folder (test/images, test/labels) or a VOC devkit holds no images itself:
    its one image folder is read. An export root (train/valid/test) is ambiguous: skipped, with
    a line naming each split's image folder and its count; so are images only in subfolders."""
    exp = tmp_path / "export"
    made = {s: _images(exp / s / "images", [f"{s}{i}.jpg" for i in range(n)]) for s, n in
            (("train", 3), ("valid", 2), ("test", 4))}
    for s in made:
        (exp / s / "labels").mkdir()
        (exp / s / "labels" / f"{s}0.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    assert expand_inputs([exp / "test"]) == (made["test"], [])
    paths, skipped = expand_inputs([exp, made["train"][0]])
    assert paths == [made["train"][0]] and len(skipped) == 1  # what could be read still is
    assert skipped[0].startswith(f"{exp}: no images of its own")
    for s, n in (("train", 3), ("valid", 2), ("test", 4)):
        assert f"{exp / s / 'images'}: {n} images" in skipped[0]
    voc = _images(tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages", ["a.jpg", "b.jpg"])
    (tmp_path / "VOCdevkit" / "VOC2007" / "Annotations").mkdir()
    (tmp_path / "VOCdevkit" / "VOC2007" / "SegmentationClass").mkdir()
    _images(tmp_path / "VOCdevkit" / "VOC2007" / "SegmentationClass", ["a.png"])  # not what is detected
    assert expand_inputs([tmp_path / "VOCdevkit"]) == (voc, []) == expand_inputs([tmp_path / "VOCdevkit" / "VOC2007"])
    _images(tmp_path / "nested" / "2021" / "jan", ["x.jpg"])
    (tmp_path / "empty").mkdir()
    paths, skipped = expand_inputs([tmp_path / "nested", tmp_path / "empty"])
    assert paths == [] and skipped == [
        f"{tmp_path / 'nested'}: no images in this folder (folders are not searched recursively); "
        f"{tmp_path / 'nested' / '2021' / 'jan'}: 1 image: pass that folder",
        f"{tmp_path / 'empty'}: no images in this folder"]


def test_detect_takes_one_override_string_as_one_override(trained, tmp_path):
    d, _ = trained
    img = sorted((d / "data" / "JPEGImages").glob("*.jpg"))[0]
    one = sppdet.detect(d / "run", img, tmp_path / "a", overrides="test.nms=0.4", paint=False, workers=1)
    listed = sppdet.detect(d / "run", [img], tmp_path / "b", overrides=["test.nms=0.4"], paint=False, workers=1)
    assert one["images"] == listed["images"] == 1
    assert (tmp_path / "a" / "detections.json").read_text() == (tmp_path / "b" / "detections.json").read_text()
    with pytest.raises(UserError, match="paint must be True or False, not 'no'"):
        sppdet.detect(d / "run", img, tmp_path / "c", paint="no")
    assert not (tmp_path / "c").exists()


def test_detect_keeps_inputs_apart_and_resumes(trained, tmp_path):
    d, _ = trained
    src = sorted((d / "data" / "JPEGImages").glob("*.jpg"))[:2]
    a1, b1 = tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg"
    for s, t in [(src[0], a1), (src[1], b1)]:
        t.parent.mkdir(exist_ok=True)
        t.write_bytes(s.read_bytes())
    a2 = tmp_path / "a" / "x.png"
    Image.open(src[1]).save(a2)
    out = tmp_path / "det"
    res = sppdet.detect(d / "run", [a1, b1, a2], out, threshold=0.0)
    assert res["images"] == 3 and not res["skipped"]
    assert {p.relative_to(out).as_posix() for p in out.rglob("*_det.jpg")} == {
        "a/x.jpg_det.jpg", "a/x.png_det.jpg", "b/x_det.jpg"}
    rows = json.loads((out / "detections.json").read_text())
    assert {r["image"] for r in rows} == {str(a1), str(b1), str(a2)}
    # b/x.jpg and a/x.png hold the same picture: the same detections under two names
    assert sorted(r["score"] for r in rows if r["image"] == str(b1)) == \
        sorted(r["score"] for r in rows if r["image"] == str(a2))
    # a run cut after the first image (and a torn line) continues where it stopped
    lines = (out / "detections.jsonl").read_text().splitlines()
    (out / "detections.jsonl").write_text("\n".join(lines[:2]) + '\n{"image": "torn')
    (out / "detections.json").unlink()
    res2 = sppdet.detect(d / "run", [a1, b1, a2], out, threshold=0.0)
    assert json.loads((out / "detections.json").read_text()) == rows and res2["detections"] == len(rows)
    # other settings are not mixed into those results
    with pytest.raises(UserError, match="another detect command"):
        sppdet.detect(d / "run", [a1], out, threshold=0.5)
    sppdet.detect(d / "run", [a1], out, threshold=0.5, overwrite=True)
    # test-time overrides apply (a stricter NMS can only keep fewer boxes) and leave the run alone
    det = sppdet.load(d / "run")
    loose = sppdet.detect(det, [a1], tmp_path / "loose", threshold=0.0,
                          overrides=["test.max_per_image=100000"])["detections"]
    strict = sppdet.detect(det, [a1], tmp_path / "strict", threshold=0.0,
                           overrides=["test.max_per_image=100000", "test.nms=0.05"])
    assert strict["detections"] < loose and det.cfg.test.nms == 0.3


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "sppdet.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_cli_refuses_bad_outputs_and_splits_before_training(trained, tmp_path):
    d, _ = trained
    (tmp_path / "file").write_text("x")
    for args, msg in [
        (["--out", tmp_path / "file"], "exists and is not a folder"),
        (["--out", tmp_path / "r", "--eval-split", "bogus"], "available splits"),
        (["--out", tmp_path / "r", "--cache", tmp_path / "file"], "cache folder"),
        (["--out", tmp_path / "r", "--set", "test.nms=abc"], "test.nms"),
    ]:
        r = _cli("train", "--data", d / "data", "--split", "trainval", "--cache", tmp_path / "c", *args)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("sppdet: error:")
        assert not (tmp_path / "c" / "proposals").exists() or not any((tmp_path / "c" / "proposals").rglob("*.np*"))
    r = _cli("bench", "--data", d / "data", "--run", d / "run", "--config", tmp_path / "file", "--out", tmp_path / "b")
    assert r.returncode == 2 and "not both" in r.stderr


def test_global_options_work_before_the_command(tmp_path):
    r = _cli("--debug", "train", "--data", tmp_path / "nope", "--out", tmp_path / "r")
    assert r.returncode != 0 and "Traceback" in r.stderr  # --debug before the command is honoured
    r = _cli("--threads", "0", "synth", "--out", tmp_path / "s")
    assert r.returncode == 2 and "--threads must be at least 1" in r.stderr
    r = _cli("synth", "--out", tmp_path / "s", "--images", "-5")
    assert r.returncode == 2 and r.stderr.startswith("sppdet: error:") and "--images must be at least 1" in r.stderr


# -- run directories ----------------------------------------------------------------------------
@pytest.fixture
def run_copy(trained, tmp_path):
    import shutil

    d, _ = trained
    run = tmp_path / "run"
    shutil.copytree(d / "run", run, ignore=shutil.ignore_patterns("eval_*"))
    return run


def test_damaged_runs_are_refused_with_a_reason(run_copy):
    blob = torch.load(run_copy / "model.pt", weights_only=True)
    cases = {
        "empty (0 bytes)": lambda: (run_copy / "model.pt").write_bytes(b""),
        "lacks svm_W": lambda: torch.save({k: v for k, v in blob.items() if k != "svm_W"}, run_copy / "model.pt"),
        "must hold a JSON object": lambda: (run_copy / "meta.json").write_text("[1, 2]"),
        "refuses to unpickle": lambda: torch.save({**blob, "evil": Image.new("RGB", (1, 1))}, run_copy / "model.pt"),
        "different trainings": lambda: (run_copy / "meta.json").write_text(json.dumps(
            {**json.loads((run_copy / "meta.json").read_text()), "run_id": "0" * 32})),
        "box regressors have shape": lambda: torch.save({**blob, "bbox_W": blob["bbox_W"][:, :7]},
                                                        run_copy / "model.pt"),
    }
    original = {f: (run_copy / f).read_bytes() for f in ("model.pt", "meta.json")}
    for message, damage in cases.items():
        for f, data in original.items():
            (run_copy / f).write_bytes(data)
        damage()
        with pytest.raises(UserError, match=re.escape(message)):
            Detector.load(run_copy)
    for f, data in original.items():
        (run_copy / f).write_bytes(data)
    Detector.load(run_copy)  # restored: loads again


def test_a_run_that_cannot_be_written_is_saved_elsewhere(trained, tmp_path, tmp_path_factory, monkeypatch):
    import errno
    import tempfile

    from sppdet import api

    # the rescue goes to the system's temporary folder: a private one, so no run is left behind
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("systmp")))

    d, det = trained
    real_save = Detector.save

    def full_disk(self, run_dir, train_log=None):
        if str(run_dir).startswith(str(tmp_path)):
            raise OSError(errno.ENOSPC, "No space left on device", str(run_dir))
        return real_save(self, run_dir, train_log)

    monkeypatch.setattr(Detector, "save", full_disk)
    with pytest.raises(UserError, match="No space left on device") as exc:
        api.training._save_run(det, tmp_path / "out", {"x": 1})
    rescue = str(exc.value).split("it was saved to ")[1].split(" instead")[0]
    assert Detector.load(rescue).classes == det.classes
