"""Run folders checked against what was trained: config.yaml edited, weights not finite, old
runs, damaged classifier runs."""
import json
import logging

import pytest
import torch

from sppdet.config import load_config
from sppdet.errors import UserError


@pytest.fixture
def run_copy(shared_run, tmp_path):
    import shutil

    d, _, _ = shared_run
    run = tmp_path / "run"
    shutil.copytree(d / "run", run, ignore=shutil.ignore_patterns("eval_*", ".sppdet.lock"))
    return run


def test_run_config_edited_after_training(run_copy, caplog):
    import yaml

    from sppdet.detector import Detector

    cfg_path = run_copy / "config.yaml"
    original = cfg_path.read_text()
    tree = yaml.safe_load(original)
    meta = json.loads((run_copy / "meta.json").read_text())
    assert len(meta["config_sha256"]) == 64
    for edit, message in [
        (lambda t: t["features"].update(scales=[400]), "features.scales"),
        (lambda t: t.clear(), "differs from the configuration"),
        (lambda t: t["svm"].update(C=0.5), "svm.C"),
    ]:
        t = yaml.safe_load(original)
        edit(t)
        cfg_path.write_text(yaml.safe_dump(t))
        with pytest.raises(UserError, match=message):
            Detector.load(run_copy)
    # test-time keys may change: warned, and used
    t = yaml.safe_load(original)
    t["test"]["nms"] = 0.45
    cfg_path.write_text(yaml.safe_dump(t))
    with caplog.at_level(logging.WARNING, logger="sppdet"):
        assert Detector.load(run_copy).cfg.test.nms == 0.45
    assert "edited after training" in caplog.text and "test.nms" in caplog.text
    # YAML that does not parse, or asks for Python objects: one line naming config.yaml
    for text in ["features: [1, 2\n", "a: !!python/object/apply:os.system ['echo pwned']\n", "- 1\n- 2\n",
                 "\ufeffbad: [\n"]:
        cfg_path.write_text(text)
        with pytest.raises(UserError) as exc:
            Detector.load(run_copy)
        assert "config.yaml" in str(exc.value) and "\n" not in str(exc.value)
    for text in ["a: !!python/object/apply:os.system ['echo pwned']\n", "svm: {C: [\n"]:  # --config files too
        (run_copy / "mine.yaml").write_text(text)
        with pytest.raises(UserError) as exc:
            load_config(run_copy / "mine.yaml")
        assert "mine.yaml" in str(exc.value) and "\n" not in str(exc.value)
    cfg_path.write_text(original)
    assert Detector.load(run_copy).cfg.to_dict() == tree | {"device": Detector.load(run_copy).cfg.device}
    (run_copy / "meta.json").write_text(json.dumps({**meta, "config_sha256": "0" * 64}))
    with pytest.raises(UserError, match="disagree on the configuration"):
        Detector.load(run_copy)


def test_run_weights_not_finite_and_old_runs(run_copy):
    from sppdet.detector import Detector

    blob = torch.load(run_copy / "model.pt", weights_only=True)
    for key, change in [("svm_W", lambda v: v.index_fill(0, torch.tensor([0]), float("nan"))),
                        ("svm_b", lambda v: v + float("inf")),
                        ("bbox_W", lambda v: v * float("nan")),
                        ("feat_scale", lambda v: float("nan"))]:
        torch.save({**blob, key: change(blob[key])}, run_copy / "model.pt")
        with pytest.raises(UserError, match=f"damaged: {key} holds NaN or infinite"):
            Detector.load(run_copy)
    # a 0.3 run folder (no record of its config) still loads
    torch.save({k: v for k, v in blob.items() if k != "config"}, run_copy / "model.pt")
    assert Detector.load(run_copy).classes == blob["classes"]


def test_damaged_classifier_runs_are_user_errors(tmp_path):
    from sppdet.classification import ClsConfig, SPPClassifier, load_classifier, save_classifier

    torch.manual_seed(0)
    model = SPPClassifier(ClsConfig(hidden=8, device="cpu"), 3, pretrained=False)
    save_classifier(model, ["a", "b", "c"], tmp_path / "good", [])
    _, classes = load_classifier(tmp_path / "good")
    assert classes == ["a", "b", "c"]
    blob = torch.load(tmp_path / "good" / "classifier.pt", weights_only=True)

    def variant(name, obj):
        (tmp_path / name).mkdir()
        torch.save(obj, tmp_path / name / "classifier.pt")
        return tmp_path / name

    cases = {
        "list": ([1, 2], "holds a list"),
        "nokeys": ({"format": "x"}, "missing classes, config, state"),
        "classes": ({**blob, "classes": ["a", "b"]}, "2 classes but the output layer has"),
        "classes_type": ({**blob, "classes": "abc"}, "'classes' must be a non-empty list"),
        "config_list": ({**blob, "config": [1]}, "'config' is a list"),
        "config_bad": ({**blob, "config": {**blob["config"], "levels": [0]}}, "levels must be"),
        "config_key": ({**blob, "config": {**blob["config"], "bogus": 1}}, "unknown config keys bogus"),
        "hidden": ({**blob, "config": {**blob["config"], "hidden": 16}}, "does not match its own config"),
    }
    for name, (obj, message) in cases.items():
        with pytest.raises(UserError, match=message):
            load_classifier(variant(name, obj))
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "classifier.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="damaged"):
        load_classifier(tmp_path / "garbage")
