"""sppdet.journal, detect's resumable journal, on hand-written journals: the header that names
the command, entries keyed by the file's content, the schema an entry must meet to be reused,
torn lines, and the model digest (what changes it and what does not)."""
import hashlib
import json
import logging
import types

import numpy as np
import pytest
import torch

from sppdet.errors import UserError
from sppdet.journal import FORMAT, DetectJournal, content_key, model_digest

IDENTITY = {"model": "abc", "config": {"test": {"nms": 0.3}}, "scales": (224, 320)}
CLASSES = ["cat", "dog"]


def row(image="a.jpg", label="dog", score=0.9, bbox=(0.0, 1.0, 5.0, 6.0)):
    return {"image": image, "label": label, "score": score, "bbox": list(bbox)}


def entry(image="a.jpg", key="k1", rows=None, error=None, painted=None):
    return {"image": image, "key": key, "detections": [row(image)] if rows is None else rows, "error": error,
            "painted": painted}


def header():
    return {"sppdet_detect": FORMAT, "settings": json.loads(json.dumps(IDENTITY))}


def write_lines(path, *objs, tail=""):
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs) + tail)


def test_content_key_is_the_size_and_blake2b_of_the_bytes(tmp_path):
    p = tmp_path / "a.jpg"
    data = bytes(range(256)) * 5000  # 1.28 MB: more than one read block
    p.write_bytes(data)
    assert content_key(p) == f"{len(data)}-{hashlib.blake2b(data, digest_size=16).hexdigest()}"
    p.write_bytes(data[:-1] + b"\0")  # the same size, one byte changed
    assert content_key(p) != f"{len(data)}-{hashlib.blake2b(data, digest_size=16).hexdigest()}"
    a, b = content_key(tmp_path / "missing.jpg"), content_key(tmp_path / "missing.jpg")
    assert a.startswith("unreadable-") and a != b  # never matched later: tried again


def test_a_new_journal_is_its_header_then_one_line_per_image(tmp_path):
    path = tmp_path / "detections.jsonl"
    j = DetectJournal(path, IDENTITY, CLASSES, overwrite=False)
    j.add("a.jpg", "k1", [row()], None, painted="a_det.jpg")
    j.add("b.jpg", "k2", [], "cannot read b.jpg")
    j.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0] == {"sppdet_detect": FORMAT, "settings": {"model": "abc", "config": {"test": {"nms": 0.3}},
                                                              "scales": [224, 320]}}
    assert lines[1] == entry(painted="a_det.jpg") and lines[2] == entry("b.jpg", "k2", [], "cannot read b.jpg")
    # reopened by the same command (the identity's tuple is the header's list): results reused
    again = DetectJournal(path, IDENTITY, CLASSES, overwrite=False)
    assert again.result("a.jpg", "k1") == lines[1] and again.result("b.jpg", "k2") == lines[2]
    assert again.result("a.jpg", "k-other") is None  # the file changed since: detected again
    assert again.result("c.jpg", "k1") is None
    again.close()
    fresh = DetectJournal(path, IDENTITY, CLASSES, overwrite=True)
    fresh.close()
    assert path.read_text().splitlines() == [json.dumps(header())]


@pytest.mark.parametrize("first, message", [
    ('{"sppdet_detect": 2, "sett', "not a detect journal"),
    ('{"x": 1}', "not a detect journal"),
    ("[]", "not a detect journal"),
    (json.dumps({"sppdet_detect": FORMAT - 1, "settings": IDENTITY}), "another sppdet version"),
    (json.dumps({"sppdet_detect": FORMAT, "settings": {**IDENTITY, "model": "other"}}), "another detect command"),
])
def test_a_foreign_header_is_refused_and_the_file_kept(tmp_path, first, message):
    path = tmp_path / "detections.jsonl"
    write_lines(path, first, entry())
    before = path.read_bytes()
    with pytest.raises(UserError, match=message):
        DetectJournal(path, IDENTITY, CLASSES, overwrite=False)
    assert path.read_bytes() == before


def test_entries_that_fail_the_schema_are_not_reused(tmp_path, caplog):
    path = tmp_path / "detections.jsonl"
    bad = [
        entry("e1.jpg", rows=[row("e1.jpg", label="zebra")]),  # not a class of this detector
        entry("e2.jpg", rows=[row("e2.jpg", score=0.05)]),  # below dog's threshold
        entry("e3.jpg", rows=[row("e3.jpg", score=True)]),
        entry("e4.jpg", rows=[row("e4.jpg", bbox=(0, 0, float("inf"), 1))]),
        entry("e5.jpg", rows=[row("e5.jpg", bbox=(0, 0, 1))]),
        entry("e6.jpg", rows=[row("other.jpg")]),  # another image's row
        entry("e7.jpg", rows=[row("e7.jpg")] * 3),  # more than max_rows
        entry("e8.jpg", error="unreadable"),  # an error with detections
        {**entry("e9.jpg"), "video": "frames.jsonl"},
        {**entry("e10.jpg"), "key": 7},
        "not json",
    ]
    good = [entry("g1.jpg", rows=[row("g1.jpg", label="cat", score=0.05)]),  # cat's threshold is lower
            entry("g2.jpg", rows=[]), entry("g3.jpg", rows=[], error="unreadable"),
            {**entry("g4.jpg", rows=[]), "video": {"every": 2}}]
    write_lines(path, header(), *bad, *good, "")
    with caplog.at_level(logging.WARNING, logger="sppdet"):
        j = DetectJournal(path, IDENTITY, CLASSES, overwrite=False, min_score={"cat": 0.0, "dog": 0.1}, max_rows=2)
    j.close()
    assert sorted(j.entries) == ["g1.jpg", "g2.jpg", "g3.jpg", "g4.jpg"]
    assert f"{len(bad)} damaged lines" in caplog.text  # the blank line is not counted


def test_a_torn_last_line_is_ended_before_the_next_entry(tmp_path):
    path = tmp_path / "detections.jsonl"
    write_lines(path, header(), entry(), tail='{"image": "b.jp')
    j = DetectJournal(path, IDENTITY, CLASSES, overwrite=False)
    j.add("c.jpg", "k3", [], None)
    j.close()
    lines = path.read_text().splitlines()
    assert lines[2] == '{"image": "b.jp' and json.loads(lines[3]) == entry("c.jpg", "k3", [])
    assert sorted(DetectJournal(path, IDENTITY, CLASSES, overwrite=False).entries) == ["a.jpg", "c.jpg"]


def test_the_journal_is_not_written_through_a_link(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    (tmp_path / "detections.jsonl").symlink_to(target)
    with pytest.raises(UserError, match="symbolic link"):
        DetectJournal(tmp_path / "detections.jsonl", IDENTITY, CLASSES, overwrite=True)
    assert target.read_text() == "keep"


def fake_detector(**changes):
    """What model_digest reads of a detector, with small arrays."""
    fields = dict(extractor=types.SimpleNamespace(trunk=types.SimpleNamespace(weights_id="w1")),
                  classes=["cat", "dog"], feat_scale=1.0, pool5_scale=2.0, svm_W=torch.ones(2, 3),
                  svm_b=torch.zeros(2), head=None, bbox=None, rpn=None, platt=None)
    fields.update(changes)
    return types.SimpleNamespace(**fields)


def test_model_digest_follows_everything_a_detector_computes_with():
    base = model_digest(fake_detector())
    assert len(base) == 32 and model_digest(fake_detector()) == base  # the same values: the same digest
    changed = [
        fake_detector(svm_b=torch.tensor([0.0, 1e-6])),
        fake_detector(svm_W=torch.ones(3, 2)),  # the same bytes in another shape
        fake_detector(svm_W=torch.ones(2, 3, dtype=torch.float64)),
        fake_detector(classes=["dog", "cat"]),
        fake_detector(feat_scale=1.5),
        fake_detector(extractor=types.SimpleNamespace(trunk=types.SimpleNamespace(weights_id="w2"))),
        fake_detector(platt=np.array([[1.0, 0.0], [1.0, 0.0]])),
        fake_detector(rpn=types.SimpleNamespace(digest=lambda: "rpn1")),
        fake_detector(bbox=types.SimpleNamespace(W=np.zeros((2, 4)), b=np.zeros(2), trained=np.ones(2, bool))),
        fake_detector(head=torch.nn.Linear(3, 2)),
    ]
    digests = [model_digest(d) for d in changed]
    assert base not in digests and len(set(digests)) == len(digests)
