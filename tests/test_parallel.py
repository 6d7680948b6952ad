"""Parallel and distributed execution: a process pool and a local Ray cluster must train the
same model (SVM weights, box regressors, metrics) as one process, from their own empty caches;
errors name their image; Ctrl-C stops the workers."""
import os
import time

import numpy as np
import pytest

from sppdet.errors import UserError
from sppdet.parallel import PoolExecutor, SerialExecutor, make_executor

N_IMAGES = 8


# -- task functions (module level: workers import them) --------------------------------------
def square(x):
    return x * x


def slow_identity(x):
    time.sleep(0.05 * (x % 3))  # later items often finish first: the map must still keep order
    return x


def fail_on_three(x):
    if x == 3:
        raise ValueError("bad value three")
    return x


def sleep_unless_zero(x):
    if x:
        time.sleep(30)
    return x


def sleep_long(x):
    time.sleep(30)
    return x


# -- the shared small training set -----------------------------------------------------------
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch
    import torchvision

    from sppdet.config import BackboneConfig, Config, FeatureConfig, ProposalConfig, SVMConfig
    from sppdet.datasets.synth import write_synthetic

    root = tmp_path_factory.mktemp("parallel")
    write_synthetic(root / "syn", N_IMAGES, seed=1)
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2().state_dict(), root / "w.pth")
    cfg = Config(backbone=BackboneConfig(weights=str(root / "w.pth")), device="cpu",
                 proposals=ProposalConfig(max_boxes=200, work_size=200), features=FeatureConfig(scales=[224]),
                 svm=SVMConfig(max_iter=300))
    return root, cfg


def train_and_eval(root, cfg, executor, cache_name, per_class=None):
    """Train on trainval and evaluate on test, every stage through ``executor``."""
    from sppdet.cache import CachedData
    from sppdet.datasets import load_dataset
    from sppdet.detection import run_detection
    from sppdet.evaluation.voc import evaluate_voc
    from sppdet.training import train_detector

    cache = root / cache_name
    train = load_dataset(root / "syn", "trainval")
    det, log = train_detector(cfg, train, cache, executor=executor, per_class=per_class)
    test = load_dataset(root / "syn", "test", classes=train.classes)
    data = CachedData.from_config(cfg, det.extractor, cache)
    recs = data.prepare(test.records, test.report, executor=executor)
    res = evaluate_voc(recs, run_detection(det, recs, data, test.report), train.classes, "voc07")
    return {"W": det.svm_W.numpy(), "b": det.svm_b.numpy(), "bbox_W": det.bbox.W, "bbox_b": det.bbox.b,
            "platt": det.platt,
            "metrics": res, "log": log, "cache": cache, "n_images": len(train) + len(test), "det": det,
            "test_records": recs}


@pytest.fixture(scope="module")
def reference(setup):
    root, cfg = setup
    return train_and_eval(root, cfg, SerialExecutor(), "cache_serial")


def assert_same_model(a, b):
    for k in ("W", "b", "bbox_W", "bbox_b", "platt"):  # the score calibration too
        assert np.array_equal(a[k], b[k]), k
    assert a["metrics"]["AP"] == b["metrics"]["AP"]
    assert a["metrics"]["mAP"] == b["metrics"]["mAP"]


def cache_files(cache):
    """Files per cache kind, with no temporary files left behind."""
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert not [p for p in files if ".tmp" in p.name]
    return {kind: sorted(p.name for p in files if p.parts[len(cache.parts)] == kind)
            for kind in ("proposals", "features")}


def test_reference_run_is_sane(reference):
    assert reference["log"]["parallel"]["executor"] == "serial"
    assert np.abs(reference["W"]).sum() > 0
    assert 0 <= reference["metrics"]["mAP"] <= 1


def test_process_pool_trains_the_same_model(setup, reference):
    root, cfg = setup
    with make_executor(workers=2) as ex:
        assert isinstance(ex, PoolExecutor)
        # per-class SVM mining and box regression as tasks too: one code path, same bits
        out = train_and_eval(root, cfg, ex, "cache_pool", per_class=True)
    assert out["log"]["parallel"]["cache"]["computed"] > 0
    assert_same_model(reference, out)
    # each image cached once, and its proposals and maps are the serial run's exactly
    files = cache_files(out["cache"])
    assert len(files["proposals"]) == len(files["features"]) == out["n_images"]
    assert files == cache_files(reference["cache"])
    for kind in ("proposals",):
        for a in sorted((reference["cache"] / kind).rglob("*.npy")):
            b = out["cache"] / a.relative_to(reference["cache"])
            assert np.array_equal(np.load(a), np.load(b)), a.name


def test_local_ray_cluster_trains_the_same_model(setup, reference):
    ray = pytest.importorskip("ray")
    root, cfg = setup
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ex = make_executor(ray="auto")  # an initialised Ray is used as it is, and left running
        assert ex.kind == "ray" and ex.workers == 2
        out = train_and_eval(root, cfg, ex, "cache_ray")
        ex.close()
        assert ray.is_initialized()
        # a task that raises: retried by Ray, then reported with its image
        assert_failure_names_the_image(setup, root / "ray_failing", ex)
    finally:
        ray.shutdown()
    assert out["log"]["parallel"]["executor"] == "ray"
    assert_same_model(reference, out)
    files = cache_files(out["cache"])
    assert len(files["proposals"]) == len(files["features"]) == out["n_images"]


def test_detect_pipeline_matches_detection_from_the_cache(reference):
    """detect: proposals in workers, conv + SPP + SVMs in the driver, on one thread; the same
    detections with 1 or 2 workers, and the same as from the cached maps on one thread."""
    from sppdet.cache import CachedData
    from sppdet.datasets.common import LoadReport
    from sppdet.detection import run_detection
    from sppdet.detection import detect_images
    from sppdet.parallel import single_threaded

    import copy

    from sppdet.config import override_config

    det, recs = copy.copy(reference["det"]), reference["test_records"]
    det.cfg = override_config(det.cfg, ["test.score_thresh=0.0"])  # every score, as evaluation keeps
    with single_threaded():
        dets = run_detection(det, recs, CachedData.from_config(det.cfg, det.extractor, reference["cache"]), LoadReport())
    expected = sorted((d["image"], d["label"], d["score"], tuple(d["bbox"])) for d in dets)
    assert len(expected) > 0
    for workers in (1, 2):
        got = []
        with make_executor(workers=workers) as ex:
            for res in detect_images(det, [r.path for r in recs], ex):
                d = res["detections"]
                got += [(res["path"].name, det.classes[int(c)], float(sc), tuple(float(v) for v in b))
                        for b, sc, c in zip(d.boxes, d.scores, d.labels)]
        assert sorted(got) == expected, workers


def test_second_run_finds_everything_cached(setup, reference):
    from sppdet.cache import CachedData
    from sppdet.datasets import load_dataset
    from sppdet.extractors import extractor_from_config
    from sppdet.backbones import build_trunk

    root, cfg = setup
    ds = load_dataset(root / "syn", "trainval")
    data = CachedData.from_config(cfg, extractor_from_config(cfg, build_trunk("mobilenet_v2", cfg.backbone.weights), "cpu"),
                      reference["cache"])
    with make_executor(workers=2) as ex:
        assert len(data.prepare(ds.records, ds.report, executor=ex)) == len(ds)
        assert ex._pool is None  # nothing was submitted: no pool was even started
    assert data.last_stats["computed"] == 0


def assert_failure_names_the_image(setup, tmp_path, executor):
    """External proposals without a file for the image: the task raises in a worker."""
    from sppdet.backbones import build_trunk
    from sppdet.cache import CachedData
    from sppdet.config import ProposalConfig
    from sppdet.datasets import load_dataset
    from sppdet.extractors import extractor_from_config

    root, cfg = setup
    cfg = type(cfg)(**{**cfg.__dict__, "proposals": ProposalConfig(method="external", external_dir=str(tmp_path))})
    ds = load_dataset(root / "syn", "trainval")
    data = CachedData.from_config(cfg, extractor_from_config(cfg, build_trunk("mobilenet_v2", cfg.backbone.weights), "cpu"),
                      tmp_path / "cache")
    first = ds.records[0]
    with pytest.raises(UserError) as err:
        data.prepare(ds.records, ds.report, executor=executor)
    msg = str(err.value)
    assert str(first.path) in msg and f"no proposals for image {first.image_id} in " in msg, msg
    assert "\n" not in msg


def test_external_proposals_are_found_by_image_id(setup, tmp_path):
    """External files are named by image id, not by the cache key (id + content hash)."""
    import numpy as np

    from sppdet.backbones import build_trunk
    from sppdet.cache import CachedData
    from sppdet.config import ProposalConfig
    from sppdet.datasets import load_dataset
    from sppdet.extractors import extractor_from_config

    root, cfg = setup
    ext = tmp_path / "ext"
    ext.mkdir()
    cfg = type(cfg)(**{**cfg.__dict__, "proposals": ProposalConfig(method="external", external_dir=str(ext))})
    ds = load_dataset(root / "syn", "trainval")
    for i, r in enumerate(ds.records):
        np.save(ext / f"{r.image_id}.npy", np.array([[i, 1, 20, 30], [0, 0, 1e6, 5]], dtype=np.float64))
    data = CachedData.from_config(cfg, extractor_from_config(cfg, build_trunk("mobilenet_v2", cfg.backbone.weights), "cpu"),
                      tmp_path / "cache")
    with make_executor(workers=1) as ex:
        recs = data.prepare(ds.records, ds.report, executor=ex)
    for i, r in enumerate(recs):
        np.testing.assert_array_equal(data.boxes(r), [[i, 1, 20, 30], [0, 0, r.width - 1, 5]])


def test_a_failing_image_task_names_its_image(setup, tmp_path):
    with make_executor(workers=2) as ex:
        assert_failure_names_the_image(setup, tmp_path, ex)


@pytest.mark.parametrize("workers", [1, 2])
def test_map_keeps_input_order_and_reports_the_failing_item(workers):
    with make_executor(workers=workers) as ex:
        assert list(ex.map(slow_identity, range(12))) == list(range(12))
        assert list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]
        with pytest.raises(UserError, match=r"^check failed on item 3: ValueError: bad value three$"):
            list(ex.map(fail_on_three, range(20), desc="check", label=lambda x: f"item {x}"))


def test_interrupt_in_the_consumer_stops_the_pool_without_waiting():
    ex = make_executor(workers=2)
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with ex:
            for _ in ex.map(sleep_unless_zero, range(8)):
                procs = list(ex.pool._processes.values())
                raise KeyboardInterrupt  # Ctrl-C while the driver works on the first result
    assert time.perf_counter() - t0 < 20  # not the 30 s the running tasks would take
    assert procs and not any(p.is_alive() for p in procs)


@pytest.fixture
def interrupt_soon():
    """Send this process SIGINT after a moment, as Ctrl-C does."""
    import signal
    import threading

    timer = threading.Timer(3.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    yield
    timer.cancel()


def test_ctrl_c_while_waiting_stops_the_running_tasks(interrupt_soon):
    ex = make_executor(workers=2)
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with ex:
            for _ in ex.map(sleep_long, range(8)):
                pass
    assert time.perf_counter() - t0 < 20


def test_workers_must_be_positive_and_ray_must_be_installed(monkeypatch):
    import sys

    with pytest.raises(UserError, match="--workers"):
        make_executor(workers=0)
    assert isinstance(make_executor(workers=1), SerialExecutor)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    with pytest.raises(UserError, match=r"pip install 'sppdet\[ray\]'"):
        make_executor(ray="auto")


DRIVER = """
import os, sys, time
from sppdet.parallel import PoolExecutor

if __name__ == "__main__":
    ex = PoolExecutor(2)
    assert list(ex.map(abs, [-1, -2, -3, -4])) == [1, 2, 3, 4]
    print(" ".join(str(p) for p in ex.pool._processes), flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie that init has not reaped yet counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def test_workers_end_when_the_driver_is_killed_outright(tmp_path):
    """kill -9 (or the out-of-memory killer) on a command leaves no worker processes behind."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(x) for x in p.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(w) for w in workers)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "workers outlived their killed driver"
    finally:
        if p.poll() is None:
            p.kill()
