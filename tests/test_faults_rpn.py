"""The fault corpus of sppdet 0.4's new surfaces: the proposal network's file (rpn.pt),
``proposals.method: auto`` at its boundary and on degenerate boxes, score calibration at its
edges (no hits, only hits, a class never trained, a run from before calibration), and the
folder locks (stale, read-only, two writers, a reader while a training writes).

Every case can fail, and each ends in success or in one ``sppdet: error:`` line: never a
traceback, nothing lost, nothing written through a link. One tiny run (trained once, with the
automatic method exactly at its boundary and one class named but never labelled) serves them all.
"""
import contextlib
import copy
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

import sppdet
from sppdet.datasets.synth import CLASSES
from sppdet.errors import UserError
from sppdet.locking import LOCK_NAME, held_elsewhere
from sppdet.proposals.rpn import RPNModel, RPNSettings, rpn_blob, train_rpn

from rpn_items import maps_with_boxes

ROOT = Path(__file__).resolve().parents[1]
FAST = {"features": {"scales": [320]}, "svm": {"retrain_limit": 500},
        "proposals": {"rpn_epochs": 1, "rpn_max_boxes": 100, "max_boxes": 150, "work_size": 300, "mode": "fast"}}
NAMED = CLASSES + ["unicorn"]  # a class the user will label later: no objects anywhere


def training_objects(data: Path, split: str = "trainval") -> int:
    """The split's non-difficult objects, counted from the XML files (not by sppdet)."""
    n = 0
    for image_id in (data / "ImageSets" / "Main" / f"{split}.txt").read_text().split():
        root = ET.parse(data / "Annotations" / f"{image_id}.xml").getroot()
        n += sum(o.findtext("difficult", "0").strip() != "1" for o in root.iter("object"))
    return n


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_run):
    d = tmp_path_factory.mktemp("faults")

    def at_the_boundary(data: Path) -> dict:
        return {"overrides": [f"proposals.rpn_min_objects={training_objects(data)}",
                              f"data.classes=[{', '.join(NAMED)}]"]}

    det = tiny_run(d, 10, prepare=at_the_boundary, quiet=True, eval_split="test", workers=1, **FAST)
    return d, det, training_objects(d / "data")


def cli(capsys, *argv) -> tuple[int, str]:
    """``sppdet ARGV`` in this process: its exit code and its stderr."""
    from sppdet.cli import main

    capsys.readouterr()
    threads = torch.get_num_threads()  # the command sets its own: this process keeps its count
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            code = main([str(a) for a in argv])
    finally:
        torch.set_num_threads(threads)
    return code, capsys.readouterr().err


def one_error(code: int, err: str, match: str) -> None:
    """Exit code 2 and exactly one ``sppdet: error:`` line, saying ``match``, and no traceback."""
    errors = [line for line in err.splitlines() if line.startswith("sppdet: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert match in errors[0], errors[0]


def copy_run(d: Path, to: Path) -> Path:
    shutil.copytree(d / "run", to, ignore=shutil.ignore_patterns("eval_*", LOCK_NAME))
    return to


def load_quietly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sppdet.load(path)


def image(d: Path) -> Path:
    return sorted((d / "data" / "JPEGImages").glob("*.jpg"))[-1]


# -- proposals.method: auto at its boundary ------------------------------------------------------
def test_auto_at_exactly_rpn_min_objects_trains_a_network(run):
    d, det, n = run
    log = json.loads((d / "run" / "train_log.json").read_text())
    assert log["proposals"]["method"] == "rpn" and f"{n} training objects >= " in log["proposals"]["why"]
    assert (d / "run" / "rpn.pt").is_file() and det.rpn is not None


def test_auto_one_object_short_keeps_selective_search(run, tmp_path, monkeypatch):
    """The same data with the boundary one higher: selective search, decided before any work."""
    import sppdet.training

    d, _, n = run
    chosen = {}

    class Stop(Exception):
        pass

    def stop(cfg, *args, **kwargs):
        chosen["method"] = cfg.proposals.method
        raise Stop

    monkeypatch.setattr(sppdet.training.CachedData, "from_config", stop)
    with pytest.raises(Stop):
        sppdet.train(d / "data", tmp_path / "r" / "run", cache=d / "cache", workers=1,
                     overrides=[f"proposals.rpn_min_objects={n + 1}"], backbone={"weights": str(d / "w.pth")}, **FAST)
    assert chosen["method"] == "selective_search"
    assert not (tmp_path / "r").exists()  # the failed call's new folders are gone


# -- rpn.pt --------------------------------------------------------------------------------------
def _blob(run_dir: Path) -> dict:
    return torch.load(run_dir / "rpn.pt", weights_only=True)


def _other_network(settings: dict, seed: int = 1) -> RPNModel:
    """A whole, valid network of another training (same geometry, other weights)."""
    s = RPNSettings(**settings)
    items = maps_with_boxes(np.array([[0, 0, 63, 63], [100, 100, 199, 179]]), n=3, seed=seed, channels=s.channels)
    return train_rpn(s, items, [s.scale], epochs=1, lr=0.01, val_fraction=0.0, seed=seed)[0]


def _truncated(run_dir):
    data = (run_dir / "rpn.pt").read_bytes()
    (run_dir / "rpn.pt").write_bytes(data[: len(data) // 2])


def _from_another_run(run_dir):
    torch.save(rpn_blob(_other_network(_blob(run_dir)["settings"])), run_dir / "rpn.pt")


def _from_another_trunk(run_dir):  # alexnet's map: 256 channels
    settings = {**_blob(run_dir)["settings"], "channels": 256}
    torch.save(rpn_blob(RPNModel(RPNSettings(**settings))), run_dir / "rpn.pt")


def _anchors_edited(run_dir):  # the settings changed by hand, the digest left as it was
    blob = _blob(run_dir)
    blob["settings"]["sizes"] = [s * 2 for s in blob["settings"]["sizes"]]
    torch.save(blob, run_dir / "rpn.pt")


def _anchors_edited_consistently(run_dir):  # ... and the file re-saved whole: only model.pt can tell
    blob = _blob(run_dir)
    model = RPNModel(RPNSettings(**{**blob["settings"], "sizes": [s * 2 for s in blob["settings"]["sizes"]]}))
    model.load_state_dict(blob["state"])
    torch.save(rpn_blob(model), run_dir / "rpn.pt")


def _nan_weights(run_dir):
    blob = _blob(run_dir)
    blob["state"]["rpn.head.conv.0.0.weight" if "rpn.head.conv.0.0.weight" in blob["state"]
                  else "rpn.head.cls_logits.weight"].view(-1)[3] = float("nan")
    torch.save(blob, run_dir / "rpn.pt")


def _config_says_selective_search(run_dir):
    text = (run_dir / "config.yaml").read_text()
    assert "method: rpn" in text
    (run_dir / "config.yaml").write_text(text.replace("method: rpn", "method: selective_search"))


def _missing(run_dir):
    (run_dir / "rpn.pt").unlink()


@pytest.mark.parametrize("damage,message", [
    (_truncated, "rpn.pt is damaged"),
    (_from_another_run, "rpn.pt is not the proposal network model.pt was trained with"),
    (_from_another_trunk, "reads a 256-channel map"),
    (_anchors_edited, "rpn.pt is damaged or was edited"),
    (_anchors_edited_consistently, "rpn.pt is not the proposal network model.pt was trained with"),
    (_nan_weights, "NaN or infinite"),
    (_config_says_selective_search, "proposals.method"),
    (_missing, "rpn.pt) is missing"),
], ids=lambda v: getattr(v, "__name__", "")[1:] if callable(v) else "")
def test_a_damaged_rpn_file_is_one_error_line(run, tmp_path, capsys, damage, message):
    d, _, _ = run
    r = copy_run(d, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in r.iterdir() if p.is_file()}
    damage(r)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sppdet.load(r)
    code, err = cli(capsys, "detect", r, image(d), "--out", tmp_path / "out", "--workers", "1")
    one_error(code, err, message)
    code, err = cli(capsys, "eval", r, "--data", d / "data", "--split", "test", "--cache", d / "cache")
    one_error(code, err, message)
    assert not (tmp_path / "out").exists() and not list(r.glob("eval_*"))  # nothing written
    after = {p.name for p in r.iterdir() if p.is_file()}
    assert after <= set(before) | {"rpn.pt"}  # the run folder got nothing new


def _saved_as(det, to: Path, **changes) -> Path:
    """The trained model saved as another run would have been (its attributes ``changes``d)."""
    other = copy.copy(det)
    for name, value in changes.items():
        setattr(other, name, value)
    other.save(to)
    return to


def _as_selective_search_run(det, to: Path) -> Path:
    """The trained model saved as a run whose proposals are selective search (as if trained so)."""
    proposals = dataclasses.replace(det.cfg.proposals, method="selective_search")
    return _saved_as(det, to, cfg=dataclasses.replace(det.cfg, proposals=proposals), rpn=None)


def test_a_selective_search_run_with_a_stray_rpn_file_warns_and_ignores_it(run, tmp_path):
    d, det, _ = run
    r = _as_selective_search_run(det, tmp_path / "ss")
    assert not (r / "rpn.pt").exists()
    clean = load_quietly(r)(str(image(d)), threshold=0.0)
    shutil.copy(d / "run" / "rpn.pt", r / "rpn.pt")
    with pytest.warns(UserWarning, match="holds a rpn.pt, but it was trained with proposals.method=selective_search"):
        stray = sppdet.load(r)
    assert stray.rpn is None
    got = stray(str(image(d)), threshold=0.0)
    np.testing.assert_array_equal(got.boxes, clean.boxes)
    np.testing.assert_array_equal(got.scores, clean.scores)
    # the reverse: a selective-search run whose config.yaml was edited to say rpn
    text = (r / "config.yaml").read_text()
    (r / "config.yaml").write_text(text.replace("method: selective_search", "method: rpn"))
    with pytest.raises(UserError, match="proposals.method"):
        sppdet.load(r)
    # a retraining into the same folder never leaves another training's rpn.pt behind
    (r / "config.yaml").write_text(text)
    _as_selective_search_run(det, r)
    assert not (r / "rpn.pt").exists()


# -- calibration at its edges ----------------------------------------------------------------------
@pytest.mark.parametrize("hit", [False, True])
def test_calibration_sets_of_only_misses_or_only_hits(hit):
    """All N detections misses (or all hits): the best sigmoid is as flat as allowed, at Platt's
    smoothed target 1/(N+2) (or (N+1)/(N+2)), and still increasing (so AP keeps the margins')."""
    from sppdet.calibration import MIN_SLOPE, fit_platt, sigmoid

    rng = np.random.default_rng(0)
    m = rng.uniform(-1, 2, 40)
    a, b = fit_platt(m, np.full(40, hit))
    assert np.isfinite([a, b]).all() and a == pytest.approx(MIN_SLOPE)
    target = 41 / 42 if hit else 1 / 42
    p = sigmoid(m, a, b)
    assert np.all(np.abs(p - target) < 0.01) and np.all(np.diff(p[np.argsort(m)]) > 0)


def test_a_named_class_without_objects_is_never_detected_and_scored_zero(run, tmp_path):
    d, det, _ = run
    assert det.classes == NAMED and det.untrained.tolist() == [False] * len(CLASSES) + [True]
    log = json.loads((d / "run" / "train_log.json").read_text())
    assert log["untrained_classes"] == ["unicorn"] and log["positives"]["unicorn"] == 0
    assert log["calibration"]["unicorn"] == {"detections": 0, "hits": 0, "folds_refitted": 0}
    assert np.isfinite(det.platt).all()
    # eval lists it with AP 0 and no ground truth, as the devkit scores a class without detections
    m = json.loads((d / "run" / "eval_test" / "metrics.json").read_text())
    assert m["AP"]["unicorn"] == 0.0 and m["npos"]["unicorn"] == 0 and m["untrained"] == ["unicorn"]
    trained = [m["AP"][c] for c in CLASSES if m["AP"][c] is not None]
    assert m["mAP"] == pytest.approx(sum(trained) / (len(trained) + 1))
    assert m["mAP_trained"] == pytest.approx(np.mean(trained))
    # detect never reports it, at any threshold
    res = sppdet.detect(d / "run", [d / "data" / "JPEGImages"], tmp_path / "out", threshold=0.0, paint=False,
                        workers=1)
    rows = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert res["images"] == 10 and rows and "unicorn" not in {r["label"] for r in rows}


def test_scores_of_a_run_without_calibration_beside_a_calibrated_one(run, tmp_path):
    from sppdet.calibration import sigmoid

    d, det, _ = run
    old_dir = _saved_as(det, tmp_path / "v03", platt=None)  # as sppdet 0.3 saved runs: no calibration
    with pytest.warns(UserWarning, match="before sppdet 0.4 and has no score calibration"):
        old = sppdet.load(old_dir)
    new = load_quietly(d / "run")
    img = str(image(d))
    a, b = new(img, threshold=0.0), old(img, threshold=-1.0)
    assert new.calibrated and not old.calibrated and not b.calibrated
    np.testing.assert_array_equal(b.scores, b.margins)  # a 0.3 run's scores are its margins
    # the same windows and margins; the new scores are each class's sigmoid of them
    key = lambda r: sorted(zip(r.labels.tolist(), np.round(r.margins, 5).tolist()))  # noqa: E731
    assert key(a) == key(b) and len(a) > 0
    np.testing.assert_allclose(a.scores, sigmoid(a.margins, new.platt[a.labels, 0], new.platt[a.labels, 1]))
    assert ((a.scores >= 0) & (a.scores <= 1)).all()
    # evaluated with every window above the floor, both give the same APs (the map is increasing)
    e_new = sppdet.evaluate(new, data=d / "data", split="test", out=tmp_path / "e_new", cache=d / "cache")
    e_old = sppdet.evaluate(old, data=d / "data", split="test", out=tmp_path / "e_old", cache=d / "cache",
                            overrides="test.score_thresh=-1")
    assert e_new["AP"] == e_old["AP"]
    # one detect folder never mixes the two kinds of scores
    sppdet.detect(new, img, tmp_path / "det", paint=False, workers=1)
    with pytest.raises(UserError, match="another detect command"):
        sppdet.detect(old, img, tmp_path / "det", paint=False, workers=1)
    assert len(json.loads((tmp_path / "det" / "detections.json").read_text())) == len(new(img))


# -- locks -----------------------------------------------------------------------------------------
def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


@contextlib.contextmanager
def holder(folder: Path):
    """Another process holding ``folder``'s lock, as a command writing there does."""
    code = ("import sys, time; from sppdet.locking import folder_lock\n"
            f"with folder_lock({str(folder)!r}):\n    print('held', flush=True); time.sleep(120)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert p.stdout.readline().strip() == "held"
        yield p
    finally:
        p.kill()
        p.wait()


def test_a_lock_left_by_a_killed_process_blocks_nothing(run, tmp_path):
    d, _, _ = run
    out = tmp_path / "out"
    out.mkdir()
    with holder(out) as p:
        assert held_elsewhere(out)
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert (out / LOCK_NAME).is_file() and not held_elsewhere(out)  # the file stays, the lock is gone
    (out / LOCK_NAME).write_text("12345 garbage from an older tool\n")
    assert sppdet.detect(d / "run", image(d), out, paint=False, workers=1)["images"] == 1
    # the same in a run folder: it loads, and trains again over it
    r = copy_run(d, tmp_path / "run")
    with holder(r) as p:
        with pytest.raises(UserError, match="being written by another sppdet command"):
            sppdet.load(r)
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert load_quietly(r).classes == NAMED


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made read-only: by its mode, or for root (whom modes do not stop) immutable."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = lambda: folder.chmod(0o755)  # noqa: E731
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo = lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)  # noqa: E731
    else:
        pytest.skip("cannot make a folder read-only here (root, no chattr)")
    try:
        if os.access(folder, os.W_OK) and os.geteuid() != 0:
            pytest.skip("the file system ignores the read-only mode")
        yield folder
    finally:
        undo()


def test_a_read_only_run_folder_with_a_lock_file(run, tmp_path, capsys):
    d, _, _ = run
    r = copy_run(d, tmp_path / "run")
    (r / LOCK_NAME).write_text("")  # left by the training that wrote it
    with read_only(r):
        det = load_quietly(r)  # reading needs no write access, not even to the lock
        m = sppdet.evaluate(det, data=d / "data", split="test", out=tmp_path / "ev", cache=d / "cache")
        assert m["AP"] == json.loads((d / "run" / "eval_test" / "metrics.json").read_text())["AP"]
        # its default evaluation folder is inside it: refused before any work, with one line
        code, err = cli(capsys, "eval", r, "--data", d / "data", "--split", "test", "--cache", d / "cache")
        one_error(code, err, "is not writable")
        code, err = cli(capsys, "detect", r, image(d), "--out", r / "det", "--workers", "1")
        one_error(code, err, "is not writable")
    assert {p.name for p in r.iterdir()} == {p.name for p in (d / "run").iterdir()
                                             if not p.name.startswith("eval_")} | {LOCK_NAME}  # nothing new


def _wait_held(folder: Path, proc, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not held_elsewhere(folder):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout
        time.sleep(0.05)


def test_a_training_in_progress_refuses_a_second_training_and_readers(run, tmp_path, capsys):
    """`sppdet train --overwrite` retraining a run: while it works, a second training into the
    folder and an eval or detect of it are refused with one line; killing it loses nothing of
    the run that was there."""
    d, _, _ = run
    r = copy_run(d, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in r.iterdir() if p.is_file()}
    cmd = [sys.executable, "-m", "sppdet.cli", "train", "--data", d / "data", "--out", r, "--overwrite",
           "--workers", "1", "--cache", tmp_path / "cold_cache", "--set", f"backbone.weights={d / 'w.pth'}",
           "--set", "features.scales=[320]", "--set", "proposals.method=selective_search"]
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=_env())
    try:
        _wait_held(r, p)
        code, err = cli(capsys, "train", "--data", d / "data", "--out", r, "--overwrite", "--workers", "1",
                        "--cache", d / "cache", "--set", f"backbone.weights={d / 'w.pth'}")
        one_error(code, err, "another sppdet command is writing to")
        code, err = cli(capsys, "eval", r, "--data", d / "data", "--split", "test", "--cache", d / "cache")
        one_error(code, err, "being written by another sppdet command")
        code, err = cli(capsys, "detect", r, image(d), "--out", tmp_path / "det", "--workers", "1")
        one_error(code, err, "being written by another sppdet command")
        assert p.poll() is None  # the training itself goes on
    finally:
        p.kill()
        p.wait()
    assert {p.name: p.read_bytes() for p in r.iterdir() if p.is_file() and p.name != LOCK_NAME} == before
    assert not (tmp_path / "det").exists() and not list(r.glob("eval_*"))
    assert load_quietly(r).classes == NAMED  # the run that was there is whole


def test_an_evaluation_in_progress_holds_its_folder(run, tmp_path):
    d, _, _ = run
    r = copy_run(d, tmp_path / "run")
    ev = r / "eval_test"
    ev.mkdir()
    (ev / "metrics.json").write_text("{}")
    with holder(ev):  # an evaluation writing into the run
        with pytest.raises(UserError, match="an evaluation is writing to"):
            sppdet.train(d / "data", r, cache=d / "cache", overwrite=True, workers=1,
                         backbone={"weights": str(d / "w.pth")}, **FAST)
        with pytest.raises(UserError, match="another sppdet command is writing to"):
            sppdet.evaluate(r, data=d / "data", split="test", cache=d / "cache")
    assert (ev / "metrics.json").read_text() == "{}" and (r / "model.pt").is_file()  # nothing removed
    # an evaluation's lock file planted as a link is never written through
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    (ev / LOCK_NAME).unlink()
    (ev / LOCK_NAME).symlink_to(target)
    with pytest.raises(UserError, match="symbolic link"):
        sppdet.evaluate(r, data=d / "data", split="test", cache=d / "cache")
    assert target.read_text() == "keep" and (ev / "metrics.json").read_text() == "{}"


def test_a_trained_proposal_network_is_kept_for_a_rerun(run, monkeypatch, tmp_path):
    """Ctrl-C or a full disk after the RPN stage: the same training again reuses the kept network
    (train_rpn is not called) and gives the same model; a damaged kept file is trained again."""
    import sppdet.proposals.rpn as rpn_module

    d, det, n = run
    kept = sorted((d / "cache" / "stages").glob("rpn-*.pt"))
    assert len(kept) == 1
    settings = dict(cache=d / "cache", workers=1, backbone={"weights": str(d / "w.pth")}, **FAST,
                    overrides=[f"proposals.rpn_min_objects={n}", f"data.classes=[{', '.join(NAMED)}]"])

    def no_training(*a, **k):
        raise AssertionError("the kept proposal network was trained again")

    with monkeypatch.context() as m, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.setattr(rpn_module, "train_rpn", no_training)
        again = sppdet.train(d / "data", tmp_path / "again", **settings)
    assert again.rpn.digest() == det.rpn.digest()
    np.testing.assert_array_equal(again.svm_W, det.svm_W)

    kept[0].write_bytes(kept[0].read_bytes()[:100])  # truncated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        third = sppdet.train(d / "data", tmp_path / "third", **settings)
    assert third.rpn.digest() == det.rpn.digest()  # trained again: the same bits
    assert load_rpn_ok(kept[0])


def load_rpn_ok(path: Path) -> bool:
    from sppdet.proposals.rpn import load_rpn

    return load_rpn(path) is not None
