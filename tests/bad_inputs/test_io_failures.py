"""A full disk and a Ctrl-C: one line, the finished work kept, a rerun completes equal."""
import os
from pathlib import Path

import pytest
from PIL import Image

from sppdet.errors import UserError

from .makers import RUN_FAST, _detect, _rows, _by_image, decisive_run


def _enospc(*_a, **_k):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device", "injected")


def test_full_disk_during_detect_keeps_the_journal_and_resumes_equal(shared_run, tmp_path, monkeypatch):
    from sppdet import journal as journal_mod

    _, det, imgs = shared_run
    det = decisive_run(det, imgs[0], tmp_path / "run")  # the resumed rows must equal the whole ones to the last digit
    inputs = imgs[:3]
    _detect(det, inputs, tmp_path / "whole", paint=False)
    whole = _by_image(_rows(tmp_path / "whole"))
    real_write, calls = journal_mod.DetectJournal._write, []

    def write_then_fill(self, obj):
        calls.append(obj)
        if len(calls) > 2:  # the header and one image fit, then the disk is full
            _enospc()
        real_write(self, obj)

    monkeypatch.setattr(journal_mod.DetectJournal, "_write", write_then_fill)
    with pytest.raises(UserError, match=r"No space left on device.*1 of 3 images are done and kept"):
        _detect(det, inputs, tmp_path / "cut", paint=False)
    assert not (tmp_path / "cut" / "detections.json").exists()
    monkeypatch.setattr(journal_mod.DetectJournal, "_write", real_write)
    _detect(det, inputs, tmp_path / "cut", paint=False)
    assert _by_image(_rows(tmp_path / "cut")) == whole


def test_full_disk_during_eval_leaves_no_metrics_and_reruns_equal(shared_run, tmp_path, monkeypatch):
    import sppdet
    from sppdet.evaluation import report

    d, det, _ = shared_run
    out = tmp_path / "e"
    whole = sppdet.evaluate(det, data=d / "data", split="test", out=out, cache=d / "cache", workers=1)
    real = report.atomic_write_json
    monkeypatch.setattr(report, "atomic_write_json",
                        lambda path, *a, **k: _enospc() if Path(path).name == "metrics.json" else real(path, *a, **k))
    with pytest.raises(UserError, match="cannot write the evaluation to .*No space left"):
        sppdet.evaluate(det, data=d / "data", split="test", out=out, cache=d / "cache", workers=1)
    assert not (out / "metrics.json").exists()  # the old one does not outlive the files it described
    monkeypatch.setattr(report, "atomic_write_json", real)
    again = sppdet.evaluate(det, data=d / "data", split="test", out=out, cache=d / "cache", workers=1)
    assert again == whole


def test_full_disk_when_saving_a_run_keeps_it_somewhere_or_says_so(shared_run, tmp_path, monkeypatch):
    import tempfile

    from sppdet import api
    from sppdet.detector import Detector

    d, det, _ = shared_run
    real_save = Detector.save
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    full = [tmp_path / "out", tmp_path / "tmp"]

    def save(self, run_dir, train_log=None):
        if any(Path(run_dir).is_relative_to(f) for f in full):
            _enospc()
        return real_save(self, run_dir, train_log)

    monkeypatch.setattr(Detector, "save", save)
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="it was saved to") as exc:
        api.training._save_run(det, tmp_path / "out", {"x": 1}, cache_dir=cache)
    rescue = Path(str(exc.value).split("it was saved to ")[1].split(" instead")[0])
    assert rescue.is_relative_to(cache) and Detector.load(rescue).classes == det.classes
    full.append(cache)
    with pytest.raises(UserError, match="could not be saved anywhere.*Nothing of the model was kept"):
        api.training._save_run(det, tmp_path / "out", {"x": 1}, cache_dir=cache)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 96 KiB file system (root only; skipped where mounting is not allowed)."""
    import subprocess

    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mnt
    import gc

    gc.collect()  # a failed torch.save's writer (held by its traceback) closes its file
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_real_full_disk(shared_run, tiny_tmpfs, tmp_path):
    import shutil

    d, det, imgs = shared_run
    # torch.save's RuntimeError on a full disk is the OSError it is: the run save is rescued
    with pytest.raises(OSError) as exc:
        det.save(tiny_tmpfs / "run")
    assert exc.value.errno == 28
    assert not [p for p in (tiny_tmpfs / "run").iterdir() if p.name.endswith(".tmp")]
    shutil.rmtree(tiny_tmpfs / "run")
    # detect with painted images fills it: one line, the journal kept; elsewhere it finishes equal
    inputs = [tmp_path / f"{i}.png" for i in range(4)]
    for src, dst in zip(imgs, inputs):
        Image.open(src).resize((300, 300)).save(dst)  # PNGs big enough to fill the disk
    with pytest.raises(UserError, match="No space left on device"):
        _detect(det, inputs, tiny_tmpfs / "det")
    shutil.copytree(tiny_tmpfs / "det", tmp_path / "moved")
    _detect(det, inputs, tmp_path / "moved")
    _detect(det, inputs, tmp_path / "whole")
    assert _by_image(_rows(tmp_path / "moved")) == _by_image(_rows(tmp_path / "whole"))
    assert sorted(p.name for p in (tmp_path / "moved").glob("*_det.*")) == \
        sorted(p.name for p in (tmp_path / "whole").glob("*_det.*"))


def test_ctrl_c_during_the_final_evaluation_says_how_to_finish(shared_run, tmp_path, monkeypatch):
    import sppdet
    from sppdet import api
    from sppdet.detector import Detector

    d, _, _ = shared_run

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(api.training, "evaluate", interrupted)  # what train calls
    out = tmp_path / "run"
    train = lambda: sppdet.train(d / "data", out, cache=d / "cache", workers=1, eval_split="test",  # noqa: E731
                                 backbone={"weights": str(d / "w.pth")}, **RUN_FAST)
    with pytest.raises(api.UserInterrupt, match=r"model is saved in .*sppdet eval .* --split test") as exc:
        train()
    assert exc.value.exit_code == 130 and Detector.load(out).classes  # it was saved, as said
    monkeypatch.undo()
    with pytest.raises(UserError, match=r"evaluation on test did not finish: run `sppdet eval .*--split test`"):
        train()
    sppdet.evaluate(out, data=d / "data", split="test", cache=d / "cache", workers=1)
    with pytest.raises(UserError) as exc:  # finished: the plain message
        train()
    assert "did not finish" not in str(exc.value)


def test_cli_full_disk_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    code = ("import errno, sys, sppdet.cli as c\n"
            "def full(args): raise OSError(errno.ENOSPC, 'No space left on device', 'somewhere/file')\n"
            "c.cmd_train = full\n"
            "sys.exit(c.main(['train', '--data', 'd', '--out', 'o']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith("sppdet: error: No space left on device (somewhere/file)")
    assert "kept in the cache" in lines[0]  # what the command keeps
