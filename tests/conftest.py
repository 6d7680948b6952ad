import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _suite_thread_counts():
    """The torch and OpenCV thread counts the suite started with (taken before any module fixture
    runs a command that changes them)."""
    import cv2
    import torch

    return torch.get_num_threads(), cv2.getNumThreads()


@pytest.fixture(autouse=True)
def _thread_counts_restored(_suite_thread_counts):
    """Each test ends at the suite's torch and OpenCV thread counts: ``sppdet.cli.main`` run in
    this process (a test's or a module fixture's) sets them to every core for the rest of it,
    which made later tests' results depend on which tests ran before them (a run trained at 2
    threads is not the run trained at 1: multi-threaded sums round differently)."""
    import cv2
    import torch

    yield
    torch.set_num_threads(_suite_thread_counts[0])
    cv2.setNumThreads(_suite_thread_counts[1])


@pytest.fixture
def one_thread():
    """The body on one torch/OpenCV/BLAS thread (:func:`sppdet.runtime.single_threaded`): for tests
    that compare two computations to the last bit or through near-ties, whatever thread count the
    suite runs at (sums split over threads round differently from one-thread sums)."""
    from sppdet.runtime import single_threaded

    with single_threaded():
        yield


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def _save_random_weights(path: Path) -> Path:
    import torch
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2().state_dict(), path)
    return path


@pytest.fixture
def random_weights(tmp_path) -> Path:
    """A seeded random MobileNetV2 state dict on disk: a run needs a weights file to record
    and check, and the tests need no ImageNet download."""
    return _save_random_weights(tmp_path / "w.pth")


@pytest.fixture(scope="session")
def tiny_data():
    """``make(folder, images, seed=3)`` writes what a test that trains a tiny run starts from:
    ``folder/w.pth`` (seeded random MobileNetV2 weights) and ``folder/data`` (the synthetic set);
    returns the weights' path."""
    def make(folder: Path, images: int, seed: int = 3) -> Path:
        from sppdet.datasets.synth import write_synthetic

        weights = _save_random_weights(folder / "w.pth")
        write_synthetic(folder / "data", images, seed)
        return weights

    return make


@pytest.fixture(scope="session")
def tiny_run(tiny_data):
    """``make(folder, images, prepare=None, quiet=False, **settings)``: :func:`tiny_data` in
    ``folder``, then a run trained on it into ``folder/run`` (cache ``folder/cache``, the random
    weights ``folder/w.pth``), ``settings`` passed to :func:`sppdet.train`; returns the detector.
    ``prepare(data)``, when given, is called on the written data set before the training (to
    rename its files, or to count what it holds) and may return more settings; ``quiet`` trains
    with Python's warnings ignored."""
    def make(folder: Path, images: int, prepare=None, quiet: bool = False, **settings):
        import warnings

        import sppdet

        tiny_data(folder, images)
        if prepare is not None:
            settings = {**settings, **(prepare(folder / "data") or {})}
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore")
            return sppdet.train(folder / "data", folder / "run", cache=folder / "cache",
                                backbone={"weights": str(folder / "w.pth")}, **settings)

    return make


@pytest.fixture
def load_tool():
    """Import a script of tools/ as a module (tools/ is not a package)."""
    import importlib.util

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, tiny_run):
    """One tiny trained run (selective search, one 224-px scale) for the tests of detection's
    options (thresholds, tiles, videos): ``(folder, detector, test images)``."""
    d = tmp_path_factory.mktemp("small_run")
    det = tiny_run(d, 10, workers=1, proposals={"max_boxes": 60, "work_size": 200}, features={"scales": [224]},
                   svm={"retrain_limit": 300})
    return d, det, sorted((d / "data" / "JPEGImages").glob("*.jpg"))
