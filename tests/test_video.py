"""Videos and streams in ``detect``: frame indices and times against hand computation, the
annotated video's frame count, a frame's detections against the detector run on that frame,
resume, mixed inputs, truncated and unopenable files, Ctrl-C halfway, streams via --source."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

import sppdet
from sppdet.errors import UserError
from sppdet.runtime import single_threaded
from sppdet.video import parse_source, read_frames_jsonl, source_name

FPS = 6
N_FRAMES = 9
SIZE = (200, 150)  # width, height


def write_video(path, frames, fourcc, fps=FPS):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, SIZE)
    assert w.isOpened(), f"OpenCV cannot write {fourcc} here"
    for f in frames:
        w.write(f)
    w.release()
    return path


def read_video(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


@pytest.fixture(scope="module")
def clips(small_run, tmp_path_factory):
    """A 9-frame MP4 (mp4v) and MJPG AVI of the tiny run's images, and their truncations."""
    d, det, imgs = small_run
    folder = tmp_path_factory.mktemp("clips")
    frames = [cv2.resize(cv2.imread(str(imgs[i % len(imgs)])), SIZE) for i in range(N_FRAMES)]
    mp4 = write_video(folder / "clip.mp4", frames, "mp4v")
    avi = write_video(folder / "clip.avi", frames, "MJPG")
    data = avi.read_bytes()
    (folder / "cut.avi").write_bytes(data[: len(data) // 2])  # ends mid-frame: its first frames decode
    (folder / "cut.mp4").write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])  # an MP4's index is at its end
    (folder / "noise.mp4").write_bytes(b"not a video at all" * 50)
    return folder, frames


def _detect(det, inputs, out, **kw):
    kw.setdefault("threshold", 0.0)
    return sppdet.detect(det, inputs, out, workers=1, **kw)


def test_every_nth_frame_times_and_the_annotated_video(small_run, clips, tmp_path):
    d, det, _ = small_run
    folder, _ = clips
    res = _detect(det, [folder / "clip.mp4"], tmp_path / "o", every=2)
    rows = read_frames_jsonl(tmp_path / "o" / "clip_det.jsonl")
    assert [r["frame"] for r in rows] == [0, 2, 4, 6, 8]  # frames 0..8, every second
    assert [r["time"] for r in rows] == pytest.approx([0, 2 / 6, 4 / 6, 1.0, 8 / 6], abs=1e-6)
    written, fps = read_video(tmp_path / "o" / "clip_det.mp4")
    assert len(written) == 5 and fps == pytest.approx(FPS / 2)  # as long as the source: 9 frames at 6 fps
    assert written[0].shape[:2] == (SIZE[1], SIZE[0])
    (v,) = res["videos"]
    assert (v["frames_read"], v["frames_detected"], v["declared_frames"], v["truncated"]) == (9, 5, 9, False)
    assert v["detections"] == sum(len(r["scores"]) for r in rows) > 0 and res["frames"] == 5
    assert res["images"] == 0 and json.loads((tmp_path / "o" / "detections.json").read_text()) == []
    # each row is what the detector finds in that frame as OpenCV decodes it
    decoded, _ = read_video(folder / "clip.mp4")
    with single_threaded():
        for r in rows[:3]:
            ref = det(cv2.cvtColor(decoded[r["frame"]], cv2.COLOR_BGR2RGB), threshold=0.0)
            assert r["labels"] == ref.class_names and r["scores"] == [float(s) for s in ref.scores]
            np.testing.assert_array_equal(np.array(r["boxes"]).reshape(-1, 4), ref.boxes)
    for r in rows:
        assert len(r["boxes"]) == len(r["scores"]) == len(r["labels"]) == len(r["margins"])
        assert all(lab in det.classes for lab in r["labels"])


def test_a_finished_video_is_not_detected_again_unless_its_settings_change(small_run, clips, tmp_path, monkeypatch):
    from sppdet import video

    d, det, _ = small_run
    folder, _ = clips
    _detect(det, [folder / "clip.mp4"], tmp_path / "o", every=3)
    before = (tmp_path / "o" / "clip_det.jsonl").read_bytes()
    monkeypatch.setattr(video.VideoJob, "run", lambda self: pytest.fail("detected again"))
    res = _detect(det, [folder / "clip.mp4"], tmp_path / "o", every=3)
    assert res["videos"][0]["frames_detected"] == 3 and (tmp_path / "o" / "clip_det.jsonl").read_bytes() == before
    monkeypatch.undo()
    res = _detect(det, [folder / "clip.mp4"], tmp_path / "o", every=4)  # another step: detected again
    assert [r["frame"] for r in read_frames_jsonl(tmp_path / "o" / "clip_det.jsonl")] == [0, 4, 8]
    # --no-images: the frames' lines only; a later run with painting writes the video
    res = _detect(det, [folder / "clip.mp4"], tmp_path / "n", paint=False, max_frames=2)
    assert not (tmp_path / "n" / "clip_det.mp4").exists() and res["videos"][0]["video"] is None
    assert len(read_frames_jsonl(tmp_path / "n" / "clip_det.jsonl")) == 2
    _detect(det, [folder / "clip.mp4"], tmp_path / "n", max_frames=2)
    assert len(read_video(tmp_path / "n" / "clip_det.mp4")[0]) == 2


def test_images_and_videos_together_from_a_folder(small_run, clips, tmp_path):
    import shutil

    d, det, imgs = small_run
    folder, _ = clips
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(folder / "clip.avi", mixed / "a.avi")
    shutil.copy(imgs[0], mixed / "a.jpg")  # the same stem: the outputs keep their extensions apart
    res = _detect(det, [mixed], tmp_path / "o", max_frames=3)
    assert res["images"] == 1 and len(res["videos"]) == 1 and res["frames"] == 3
    rows = json.loads((tmp_path / "o" / "detections.json").read_text())
    assert {r["image"] for r in rows} == {str(mixed / "a.jpg")}
    assert (tmp_path / "o" / "a.jpg_det.jpg").is_file() and len(read_frames_jsonl(tmp_path / "o" / "a.avi_det.jsonl")) == 3
    assert len(read_video(tmp_path / "o" / "a.avi_det.mp4")[0]) == 3


def test_a_truncated_avi_keeps_its_frames_with_a_warning(small_run, clips, tmp_path, caplog):
    d, det, _ = small_run
    folder, _ = clips
    with caplog.at_level("WARNING", logger="sppdet"):
        res = _detect(det, [folder / "cut.avi"], tmp_path / "o")
    (v,) = res["videos"]
    assert 0 < v["frames_read"] < N_FRAMES and v["truncated"] and not res["skipped"]
    assert "truncated" in caplog.text and f"of the {N_FRAMES} frames" in caplog.text
    rows = read_frames_jsonl(tmp_path / "o" / "cut_det.jsonl")
    assert [r["frame"] for r in rows] == list(range(v["frames_read"]))
    assert len(read_video(tmp_path / "o" / "cut_det.mp4")[0]) == v["frames_read"]


def test_unopenable_videos_are_skipped_with_one_line_and_exit_2(small_run, clips, tmp_path):
    d, det, _ = small_run
    folder, _ = clips
    res = _detect(det, [folder / "cut.mp4", folder / "noise.mp4", folder / "clip.mp4"], tmp_path / "o", max_frames=1)
    assert len(res["skipped"]) == 2 and all("OpenCV cannot open it as a video" in s for s in res["skipped"])
    assert "truncated file" in res["skipped"][0] and len(res["videos"]) == 1
    assert not (tmp_path / "o" / "cut_det.jsonl").exists() and not (tmp_path / "o" / "noise_det.mp4").exists()
    r = subprocess.run([sys.executable, "-m", "sppdet", "detect", str(d / "run"), str(folder / "noise.mp4"),
                        "--out", str(tmp_path / "c"), "--workers", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("sppdet: error:")]
    assert len(errors) == 1 and "noise.mp4: OpenCV cannot open it as a video" in r.stderr


def test_ctrl_c_halfway_leaves_valid_lines_and_a_playable_video(small_run, clips, tmp_path, monkeypatch):
    d, det, _ = small_run
    folder, _ = clips
    k = 4
    real, calls = type(det).detect, []

    def interrupted(self, image, proposals=None, threshold=None):
        calls.append(1)
        # each line is on disk before the next frame (a kill -9 or a reader tailing it sees them all)
        on_disk = (tmp_path / "o" / "clip_det.jsonl").read_text().splitlines()
        assert [json.loads(line)["frame"] for line in on_disk] == list(range(len(calls) - 1))
        if len(calls) > k:
            raise KeyboardInterrupt
        return real(self, image, proposals, threshold)

    monkeypatch.setattr(type(det), "detect", interrupted)
    with pytest.raises(UserError, match=rf"the {k} frames detected so far are in .*clip_det.jsonl.*playable") as exc:
        _detect(det, [folder / "clip.mp4"], tmp_path / "o")
    assert exc.value.exit_code == 130
    lines = (tmp_path / "o" / "clip_det.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(k))  # every line whole and valid
    assert len(read_video(tmp_path / "o" / "clip_det.mp4")[0]) == k  # the writer was released: it plays
    monkeypatch.undo()
    res = _detect(det, [folder / "clip.mp4"], tmp_path / "o")  # the same command again: the whole video
    assert res["videos"][0]["frames_detected"] == N_FRAMES
    assert [r["frame"] for r in read_frames_jsonl(tmp_path / "o" / "clip_det.jsonl")] == list(range(N_FRAMES))


def test_streams_by_source(small_run, clips, tmp_path):
    d, det, _ = small_run
    folder, _ = clips
    assert parse_source("0") == 0 and parse_source(" 12 ") == 12 and parse_source("rtsp://cam/live") == "rtsp://cam/live"
    assert source_name(0) == "camera0" and source_name("rtsp://10.0.0.2:8554/live") == "10.0.0.2_8554_live"
    # a path given as a source is read as a stream: not journaled, named after the source and the time
    res = _detect(det, [], tmp_path / "o", sources=[str(folder / "clip.avi")], max_frames=3, every=2)
    (v,) = res["videos"]
    assert v["frames_detected"] == 3 and v["source"] == str(folder / "clip.avi")
    (lines,) = (tmp_path / "o").glob("clip.avi_*_det.jsonl")
    assert [r["frame"] for r in read_frames_jsonl(lines)] == [0, 2, 4]
    assert len(read_video(lines.with_name(lines.name.replace(".jsonl", ".mp4")))[0]) == 3
    res = _detect(det, [], tmp_path / "p", sources=[97])  # no such camera
    assert res["skipped"] == ["camera 97: OpenCV cannot open it (no such camera, or it is in use)"]
    with pytest.raises(UserError, match="no input images or videos"):
        _detect(det, [], tmp_path / "q")
    for bad in ([True], [1.5], [None]):
        with pytest.raises(UserError, match="sources must be"):
            _detect(det, [], tmp_path / "q", sources=bad)
    with pytest.raises(UserError, match="every"):
        _detect(det, [folder / "clip.mp4"], tmp_path / "q", every=0)


def test_video_outputs_are_never_written_through_a_link(small_run, clips, tmp_path):
    d, det, _ = small_run
    folder, _ = clips
    out = tmp_path / "o"
    out.mkdir()
    (out / "clip_det.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    with pytest.raises(UserError, match="symbolic link"):
        _detect(det, [folder / "clip.mp4"], out)
    assert not (tmp_path / "elsewhere.jsonl").exists()


def test_cli_contract(small_run, clips, tmp_path):
    from sppdet.cli import build_parser, main

    a = build_parser().parse_args(["detect", "RUN", "--source", "0", "--source", "rtsp://h/x", "--out", "o",
                                   "--every", "5", "--max-frames", "100", "--tile", "800", "--overlap", "0.3"])
    assert (a.inputs, a.source, a.every, a.max_frames, a.tile, a.overlap) == ([], ["0", "rtsp://h/x"], 5, 100, 800, 0.3)
    d, det, _ = small_run
    assert main(["detect", str(d / "run"), "--out", str(tmp_path / "o")]) == 2  # nothing to detect in
    assert main(["detect", str(d / "run"), str(clips[0] / "clip.mp4"), "--out", str(tmp_path / "o"), "--workers", "1",
                 "--every", "3", "--no-images"]) == 0
    assert len(read_frames_jsonl(tmp_path / "o" / "clip_det.jsonl")) == 3
