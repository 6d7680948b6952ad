"""Every argument of every public function: a value of the wrong type is one UserError naming the
argument and what it takes, raised before any work starts; where the meaning is plain (one
string as one override, one path as one input) it is taken as meant.

The table below is this test's own, written from the documented signatures: a parameter added
to a public function without an entry here (or without a check in the library) fails."""
import inspect
import math
from pathlib import Path

import numpy as np
import pytest

import sppdet
from sppdet.errors import UserError

OBJ = object()
PATH_BAD = [3, 1.5, True, "", "  ", b"bytes", [], {}, OBJ]
BOOL_BAD = [None, 0, 1, "yes", "no", "", [], 1.5]
NUMBER_BAD = ["0.5", True, math.nan, math.inf, [0.5], OBJ]
DEVICE_BAD = ["gpu", 3, "", "cuda:x", True]
WORKERS_BAD = ["2", 0, -1, 1.5, True, math.nan]
RAY_BAD = [5, "", "not an address", True, ["auto"]]
OVERRIDES_BAD = [3, [1], {"a": 1}, [None], True]
SPLIT_BAD = [3, "", [], True]
CONFIG_BAD = [3, [1], True, 1.5]
TIMINGS_BAD = [[], "x", 3]

# function → parameter → (values it must refuse, text the message must hold; None: the name)
TABLE = {
    "train": {"data": ([None] + PATH_BAD, None), "out": ([None] + PATH_BAD, None), "config": (CONFIG_BAD, None),
              "split": ([None] + SPLIT_BAD, None), "eval_split": (SPLIT_BAD, None), "cache": (PATH_BAD, None),
              "overwrite": (BOOL_BAD, None), "device": (DEVICE_BAD, None), "overrides": (OVERRIDES_BAD, None),
              "timings": (TIMINGS_BAD, None), "workers": (WORKERS_BAD, None), "ray": (RAY_BAD, None)},
    "evaluate": {"run": (PATH_BAD, None), "data": ([None] + PATH_BAD, None), "split": ([None] + SPLIT_BAD, None),
                 "detections": (PATH_BAD, None), "out": (PATH_BAD, None), "metric": (["voc", 7, None], None),
                 "coco": (BOOL_BAD, None), "plots": (BOOL_BAD, None), "analyze": (BOOL_BAD, None),
                 "similar": (["ab", [1], [["a", 1]], 3], None), "gallery": (["3", -1, 1.5, None], None),
                 "cache": (PATH_BAD, None), "device": (DEVICE_BAD, None), "overrides": (OVERRIDES_BAD, None),
                 "timings": (TIMINGS_BAD, None), "workers": (WORKERS_BAD, None), "ray": (RAY_BAD, None),
                 "executor": (["x", 3, []], None)},
    "detect": {"run": ([None] + PATH_BAD, None), "inputs": ([None, 3, [None], [3], {}, b"x"], None),
               "out": ([None] + PATH_BAD, None), "threshold": (NUMBER_BAD + [{"RBC": None}], None), "paint": (BOOL_BAD, None),
               "exif_transpose": (BOOL_BAD, None), "device": (DEVICE_BAD, None), "overwrite": (BOOL_BAD, None),
               "workers": (WORKERS_BAD, None), "ray": (RAY_BAD, None), "overrides": (OVERRIDES_BAD, None),
               "tile": (["800", 0, 1.5, True], "tile (--tile) must be"),
               "overlap": (NUMBER_BAD, "overlap (--overlap) must be"),
               "every": ([None, 0, "2", 1.5, True], "every (--every) must be"),
               "max_frames": ([0, "5", True], "max_frames (--max-frames) must be"),
               "sources": ([None, 1.5, [None], [True], [""]], None),
               "engine": (["onnx", "", 3, True], "engine must be")},
    "load": {"run": ([None] + PATH_BAD, None), "device": (DEVICE_BAD, None), "weights": (PATH_BAD, None),
             "engine": (["onnx", "", 3, True], "engine must be")},
    "load_data": {"data": ([None] + PATH_BAD, None), "split": ([None] + SPLIT_BAD, None),
                  "cfg": (["x", {}, 3], None), "classes": (["cat", [1], 3, [""]], None)},
    "make_config": {"config": (CONFIG_BAD, None), "overrides": (OVERRIDES_BAD, None)},
    "proposal_recall": {"data": ([None] + PATH_BAD, None), "split": ([None] + SPLIT_BAD, None),
                        "out": ([None] + PATH_BAD, None), "config": (CONFIG_BAD, None),
                        "overrides": (OVERRIDES_BAD, None), "cache": (PATH_BAD, None),
                        "workers": (WORKERS_BAD, None), "ray": (RAY_BAD, None), "runs": ([3, [3], [None]], None),
                        "configured": (BOOL_BAD, None)},
    "bench": {"data": ([None] + PATH_BAD, None), "split": ([None] + SPLIT_BAD, None),
              "images": (["3", 0, 1.5, None], "images (--images)"),
              "rcnn_images": (["3", 0, 1.5], "rcnn_images (--rcnn-images)"), "out": ([None] + PATH_BAD, None),
              "run": (PATH_BAD, None), "config": (CONFIG_BAD, None), "overrides": (OVERRIDES_BAD, None),
              "cache": (PATH_BAD, None), "device": (DEVICE_BAD, None), "workers": (WORKERS_BAD, None),
              "ray": (RAY_BAD, None)},
    "Detector.__call__": {"source": ([None, 3], "cannot read an image"),
                          "proposals": (["boxes", np.zeros((3, 3))], None), "exif_transpose": (BOOL_BAD, None),
                          "threshold": (NUMBER_BAD + [{"RBC": "high"}, {3: 0.5}, np.zeros((2, 2))], None),
                          "tile": (["800", 0, 1.5, True], None), "overlap": ([None] + NUMBER_BAD, None)},
    "Detections.plot": {"min_score": (NUMBER_BAD, None)},
}


class WorkStarted(AssertionError):
    pass


@pytest.fixture
def no_work(monkeypatch):
    """Any long work (loading a run, reading data, training, timing) fails the test: the checks
    must come first."""
    import sppdet.api
    import sppdet.benchmark
    import sppdet.detector
    import sppdet.training

    def started(*a, **k):
        raise WorkStarted("work started before the arguments were checked")

    monkeypatch.setattr(sppdet.detector.Detector, "load", classmethod(started))
    monkeypatch.setattr(sppdet.training, "train_detector", started)
    monkeypatch.setattr(sppdet.benchmark, "run_bench", started)
    monkeypatch.setattr("sppdet.datasets.load_dataset", started)
    for command in (sppdet.api.training, sppdet.api.evaluation, sppdet.api.detection, sppdet.api.measure,
                    sppdet.api.classifier):  # each names the shared helper where it imports it
        if hasattr(command, "_out_dir"):
            monkeypatch.setattr(command, "_out_dir", started)


def _bare_detector():
    from sppdet.config import Config
    from sppdet.detector import Detector

    return Detector(Config(), ["a", "b"], None, None, np.zeros((4, 2)), np.zeros(2), 1.0, None, 1.0)


def _target(name: str, tmp_path: Path):
    """The function and valid arguments (nothing they name exists: no work may start anyway)."""
    from sppdet.detector import Detections

    run, data, out = tmp_path / "run", tmp_path / "data", tmp_path / "out"
    if name == "Detector.__call__":
        return _bare_detector(), {"source": np.zeros((8, 8, 3), np.uint8)}
    if name == "Detections.plot":
        return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)).plot, {}
    valid = {"train": {"data": data, "out": out}, "evaluate": {"run": run, "data": data},
             "detect": {"run": run, "inputs": [data], "out": out}, "load": {"run": run},
             "load_data": {"data": data, "split": "test"}, "make_config": {},
             "proposal_recall": {"data": data, "out": out}, "bench": {"data": data, "out": out}}[name]
    return getattr(sppdet, name), valid


def test_every_public_function_checks_every_argument():
    from sppdet.detector import Detections, Detector

    public = {n for n in sppdet.__all__ if callable(getattr(sppdet, n)) and not isinstance(getattr(sppdet, n), type)
              and n != "UserError"}
    assert public == {n for n in TABLE if "." not in n}, "a public function without its table entry"
    fns = {**{n: getattr(sppdet, n) for n in public}, "Detector.__call__": Detector.__call__,
           "Detections.plot": Detections.plot}
    for name, fn in fns.items():
        params = [p for p, v in inspect.signature(fn).parameters.items()
                  if p != "self" and v.kind is not inspect.Parameter.VAR_KEYWORD]
        assert sorted(params) == sorted(TABLE[name]), name
        assert set(getattr(fn, "takes", {})) == set(params), f"{name}: not every argument is checked"


@pytest.mark.parametrize("name", list(TABLE))
def test_wrong_types_are_one_error_naming_the_argument(name, tmp_path, no_work):
    fn, valid = _target(name, tmp_path)
    for param, (bad_values, says) in TABLE[name].items():
        for bad in bad_values:
            if bad is None and param not in valid:
                continue  # an optional argument's None is its default
            kwargs = {**valid, param: bad}
            if name == "evaluate" and param == "detections":
                kwargs.pop("run")  # a run or a detections file
            with pytest.raises(UserError) as exc:
                fn(**kwargs)
            message = str(exc.value)
            assert (says or f"{param} must be") in message, (name, param, bad, message)
            assert "\n" not in message


def test_missing_and_unknown_arguments_are_one_error(no_work, tmp_path):
    with pytest.raises(UserError, match="detect: missing a required argument: 'out'"):
        sppdet.detect(tmp_path / "run", [tmp_path])
    with pytest.raises(UserError, match="unexpected keyword argument 'thresh'"):
        sppdet.detect(tmp_path / "run", [tmp_path], tmp_path / "o", thresh=0.3)


def test_plain_meanings_are_taken_as_meant():
    """One string is one override and one input (never its characters); numpy's bools and ints
    and a torch.device are what they say."""
    import torch

    from sppdet.api import detect, evaluate, proposal_recall

    assert detect.takes["overrides"].check("overrides", "test.nms=0.4") == ["test.nms=0.4"]
    assert detect.takes["inputs"].check("inputs", "photos/") == ["photos/"]
    assert detect.takes["inputs"].check("inputs", ("a.jpg", Path("b.jpg"))) == ["a.jpg", Path("b.jpg")]
    assert proposal_recall.takes["runs"].check("runs", "runs/a") == ["runs/a"]
    assert detect.takes["paint"].check("paint", np.bool_(False)) is False
    assert evaluate.takes["gallery"].check("gallery", np.int64(3)) == 3
    assert detect.takes["device"].check("device", torch.device("cpu")) == "cpu"
    assert detect.takes["ray"].check("ray", "ray://head:10001") == "ray://head:10001"
    cfg = sppdet.make_config(None, overrides="test.nms=0.4")
    assert cfg.test.nms == 0.4 and sppdet.make_config(None, overrides=["test.nms=0.4"]) == cfg
    with pytest.raises(UserError, match="carry no image"):
        from sppdet.detector import Detections

        Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)).plot()
