"""End to end through the CLI on a tiny synthetic set: train → detect → eval, exit codes,
no tracebacks for user errors, interruption and resume, repeatability."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torchvision

from corpus import make_corpus
from sppdet.cli import main

FAST = ["proposals.max_boxes=150", "proposals.work_size=300", "features.scales=[320]",
        "finetune.iterations=20", "finetune.hidden=64", "svm.retrain_limit=500"]


def run_cli(*args, timeout=600):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "sppdet.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Synthetic data, a random-weight trunk file (no download needed) and one trained run."""
    d = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2().state_dict(), d / "weights.pth")
    assert main(["synth", "--out", str(d / "data"), "--images", "14", "--seed", "1"]) == 0
    sets = [f"--set={s}" for s in FAST + [f"backbone.weights={d / 'weights.pth'}"]]
    # Trained through the CLI in its own process, like the runs it is compared with: results are
    # repeatable for the same command, not across differently set-up processes (thread pools).
    r = run_cli("train", "--data", d / "data", "--out", d / "run", "--cache", d / "cache",
                "--eval-split", "test", *sets)
    assert r.returncode == 0, r.stderr
    return d, sets


def test_train_detect_eval(world, tmp_path):
    d, _ = world
    metrics = json.loads((d / "run" / "eval_test" / "metrics.json").read_text())
    assert metrics["metric"] == "voc07" and set(metrics["AP"]) == {"disc", "triangle", "star", "cross", "ring"}
    r = run_cli("detect", d / "run", d / "data" / "JPEGImages", "--out", tmp_path / "det", "--threshold", "0")
    assert r.returncode == 0, r.stderr
    dets = json.loads((tmp_path / "det" / "detections.json").read_text())
    assert dets and {"image", "label", "score", "bbox"} <= dets[0].keys()
    assert len(list((tmp_path / "det").glob("*_det.jpg"))) == 14
    r = run_cli("eval", "--detections", tmp_path / "det" / "detections.json", "--data", d / "data", "--split",
                "test", "--out", tmp_path / "ev", "--coco", "--plots")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert 0.0 <= m["mAP"] <= 1.0 and "AP50" in m["coco"]
    assert len(list((tmp_path / "ev" / "comp4").glob("comp4_det_test_*.txt"))) == 5
    assert list((tmp_path / "ev" / "plots").glob("*.png"))


def test_detect_handles_the_bad_input_corpus(world, tmp_path):
    d, _ = world
    files = make_corpus(tmp_path / "corpus")
    r = run_cli("detect", d / "run", *files.values(), "--out", tmp_path / "det", "--threshold", "0")
    assert r.returncode == 2  # one input was not an image
    assert "Traceback" not in r.stderr
    assert "not_an_image.jpg" in r.stderr
    dets = json.loads((tmp_path / "det" / "detections.json").read_text())
    painted = {p.name for p in (tmp_path / "det").glob("*_det.jpg")}
    assert painted == {f"{p.stem}_det.jpg" for k, p in files.items() if k != "not_image"}
    assert all(0 <= v for x in dets for v in x["bbox"])


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "/nonexistent/data", "--out", "{tmp}/r"], "data path not found"),
    (["train", "--data", "{data}", "--out", "{tmp}/r", "--set", "svm.bogus=1"], "unknown key"),
    (["train", "--data", "{data}", "--split", "nosuchsplit", "--out", "{tmp}/r"], "available splits"),
    (["eval", "--detections", "{tmp}/bad.json", "--data", "{data}"], "not valid JSON"),
    (["eval", "{tmp}/not_a_run", "--data", "{data}"], "run directory not found"),
    (["detect", "{tmp}/broken_run", "{data}/JPEGImages", "--out", "{tmp}/o"], "model.pt is missing"),
])
def test_user_errors_exit_2_without_traceback(world, tmp_path, args, message):
    d, _ = world
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "broken_run").mkdir()
    (tmp_path / "broken_run" / "config.yaml").write_text("{}")
    r = run_cli(*[a.format(tmp=tmp_path, data=d / "data") for a in args])
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("sppdet: error:")


def test_debug_shows_the_traceback(tmp_path):
    r = run_cli("train", "--data", tmp_path / "nope", "--out", tmp_path / "r", "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_same_seed_same_metrics_and_resume_after_kill(world, tmp_path):
    """Kill a training run while it is caching, run it again: it resumes and ends with the
    metrics of an uninterrupted run; a damaged cache file is recomputed."""
    d, sets = world
    args = ["train", "--data", d / "data", "--out", tmp_path / "run", "--cache", tmp_path / "cache",
            "--eval-split", "test", *sets]
    proc = subprocess.Popen([sys.executable, "-m", "sppdet.cli", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((tmp_path / "cache").glob("proposals/*/*.npz"))) < 4:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run" / "model.pt").exists()
    done = list((tmp_path / "cache").glob("proposals/*/*.npz"))
    assert 4 <= len(done) < 14
    done[0].write_bytes(b"damaged")  # a torn write must be detected and recomputed
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    a = json.loads((tmp_path / "run" / "eval_test" / "metrics.json").read_text())
    b = json.loads((d / "run" / "eval_test" / "metrics.json").read_text())
    assert a == b  # identical to the uninterrupted run with the same seed
