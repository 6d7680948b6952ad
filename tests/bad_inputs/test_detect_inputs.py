"""detect's journal and output folder: entries checked and keyed by content, links and
directories where files belong, a second writer."""
import json

import pytest

from sppdet.errors import UserError

from .makers import RUN_FAST, _detect, _rows, _by_image, copy_detector, decisive_run


def test_detect_journal_entries_are_checked_and_keyed_by_content(shared_run, tmp_path):
    _, det, imgs = shared_run
    run = tmp_path / "run"
    det = decisive_run(det, imgs[0], run)  # re-detections must equal the first to the last digit
    src = tmp_path / "in"
    src.mkdir()
    a, b = src / "a.jpg", src / "b.jpg"
    a.write_bytes(imgs[0].read_bytes())
    b.write_bytes(imgs[1].read_bytes())
    out = tmp_path / "det"
    _detect(run, [a, b], out, paint=False)
    first = _by_image(_rows(out))
    assert set(first) == {str(a), str(b)} and len(first[str(a)]) > 0
    assert not list(out.glob("*_det.jpg"))
    journal = out / "detections.jsonl"
    header, ea, eb = journal.read_text().splitlines()
    # a rerun with painting paints what --no-images left unpainted (from the journal, same boxes)
    _detect(run, [a, b], out)
    assert {p.name for p in out.glob("*_det.jpg")} == {"a_det.jpg", "b_det.jpg"}
    assert _by_image(_rows(out)) == first
    # entries that are not results: that image is detected again, never taken as done
    entry = json.loads(ea)
    row = entry["detections"][0]
    for bad in [None, "boxes", [{k: v for k, v in row.items() if k != "bbox"}], [{**row, "score": "high"}],
                [{**row, "bbox": [0, 0, float("nan"), 1]}], [{**row, "label": "not-a-class"}],
                [{**row, "bbox": [1, 2, 3]}], [{**row, "score": True}],
                [{**row, "score": -7.0}],  # below the threshold the journal was written with (-5)
                [row] * 101]:  # more than test.max_per_image
        journal.write_text("\n".join([header, json.dumps({**entry, "detections": bad}), eb]) + "\n")
        _detect(run, [a, b], out, paint=False)
        assert _by_image(_rows(out)) == first, bad
    # a header that cannot be read or is foreign: refused, its rows never reused
    for head in ['{"sppdet_detect": 2, "sett', '{"x": 1}', "[]", '{"sppdet_detect": 1, "settings": {}}']:
        journal.write_text("\n".join([head, ea, eb]) + "\n")
        with pytest.raises(UserError, match="journal|another sppdet version"):
            _detect(run, [a, b], out)
    journal.write_text("\n".join([header, ea, eb]) + "\n")
    with pytest.raises(UserError, match="another detect command"):  # other settings
        _detect(run, [a, b], out, threshold=0.5)
    with pytest.raises(UserError, match="another detect command"):  # an edited model: other digest
        edited = copy_detector(det)
        edited.svm_b = edited.svm_b + 1.0
        _detect(edited, [a, b], out)
    # an input replaced under the same name gets the new picture's boxes
    a.write_bytes(imgs[1].read_bytes())
    _detect(run, [a, b], out, paint=False)
    assert _by_image(_rows(out))[str(a)] == first[str(b)]
    # an input that failed (empty file) and was fixed is detected on the rerun
    b.write_bytes(b"")
    res = _detect(run, [a, b], out, paint=False)
    assert len(res["skipped"]) == 1 and str(b) not in _by_image(_rows(out))
    b.write_bytes(imgs[1].read_bytes())
    res = _detect(run, [a, b], out, paint=False)
    assert not res["skipped"] and _by_image(_rows(out))[str(b)] == first[str(b)]
    # a torn last line (a kill or a full disk mid-write) is ended before the next append
    journal.write_text(journal.read_text() + '{"image": "to')
    _detect(run, [a, b, imgs[2]], out, paint=False)
    assert all(json.loads(line) for line in journal.read_text().splitlines()[:-2] if not line.startswith('{"image": "to'))
    assert str(imgs[2]) in _by_image(_rows(out))


def test_detect_out_links_directories_and_a_second_writer(shared_run, tmp_path):
    import subprocess
    import sys

    from sppdet.locking import folder_lock

    d, det, imgs = shared_run
    out = tmp_path / "det"
    (out / "detections.jsonl").mkdir(parents=True)
    with pytest.raises(UserError, match="not a regular file"):
        _detect(det, [imgs[0]], out)
    (out / "detections.jsonl").rmdir()
    (out / "detections.json").mkdir()
    with pytest.raises(UserError, match="detections.json exists and is not a regular file"):
        _detect(det, [imgs[0]], out)
    (out / "detections.json").rmdir()
    (out / "detections.jsonl").unlink(missing_ok=True)
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    (out / "detections.jsonl").symlink_to(target)
    with pytest.raises(UserError, match="symbolic link"):
        _detect(det, [imgs[0]], out, overwrite=True)
    assert target.read_text() == "keep"
    (out / "detections.jsonl").unlink()
    # a painted image's folder planted as a link out of --out
    sub = tmp_path / "in" / "sub"
    sub.mkdir(parents=True)
    (tmp_path / "in" / "top.jpg").write_bytes(imgs[0].read_bytes())
    (sub / "x.jpg").write_bytes(imgs[1].read_bytes())
    (tmp_path / "outside").mkdir()
    (out / "sub").symlink_to(tmp_path / "outside")
    with pytest.raises(UserError, match="link out of --out"):
        _detect(det, [tmp_path / "in" / "top.jpg", sub / "x.jpg"], out, overwrite=True)
    assert not any((tmp_path / "outside").iterdir())
    (out / "sub").unlink()
    # a second writer is refused while the first holds --out; a killed holder blocks nothing
    with folder_lock(out):
        with pytest.raises(UserError, match="another sppdet command is writing to"):
            _detect(det, [imgs[0]], out)
    code = ("import os, sys, time; from sppdet.locking import folder_lock\n"
            f"with folder_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match="another sppdet command"):
            with folder_lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert _detect(det, [imgs[0]], out)["images"] == 1
    # the same lock guards a run folder being trained into
    with folder_lock(tmp_path / "run2"):
        with pytest.raises(UserError, match="another sppdet command is writing to"):
            import sppdet

            sppdet.train(d / "data", tmp_path / "run2", cache=d / "cache", workers=1,
                         backbone={"weights": str(d / "w.pth")}, **RUN_FAST)
