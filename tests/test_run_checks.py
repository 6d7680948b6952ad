"""sppdet.run_checks on small hand-made configurations and weight blobs: which edits of a run's
config.yaml are refused and which only warned, the recorded sha256, config.yaml's reading, and
the finite-weights check (tensor by tensor, the head's and the upper head's too)."""
import hashlib
import logging
import math

import pytest
import torch

from sppdet.errors import UserError
from sppdet.run_checks import EDITABLE, check_finite, check_trained_config, config_sha256, read_run_config

TRAINED = {"device": "cpu", "svm": {"C": 0.001, "epochs": 3}, "test": {"nms": 0.3, "score_thresh": 0.0},
           "bbox_reg": {"enabled": True, "lam": 1000.0}, "backbone": {"name": "mobilenet_v2", "weights": "a.pth"}}


def edited(**sections):
    tree = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TRAINED.items()}
    for key, value in sections.items():
        section, _, name = key.partition("__")
        if name:
            tree[section][name] = value
        else:
            tree[section] = value
    return tree


def test_the_editable_keys_are_test_time_ones_and_paths():
    assert EDITABLE == ("test.", "bbox_reg.enabled", "device", "backbone.weights", "proposals.external_dir")


def test_config_sha256_is_sha256_of_the_canonical_json():
    # canonical JSON: keys sorted, json.dumps's default separators (written out by hand here)
    text = '{"a": 1, "b": {"c": [1, 2], "d": "x"}}'
    assert config_sha256({"b": {"d": "x", "c": [1, 2]}, "a": 1}) == hashlib.sha256(text.encode()).hexdigest()
    assert config_sha256({"a": 1}) != config_sha256({"a": 1.5})


def test_identical_or_unrecorded_configs_pass_quietly(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="sppdet"):
        check_trained_config(tmp_path, TRAINED, edited())
        check_trained_config(tmp_path, TRAINED, edited(), config_sha256(TRAINED))
        check_trained_config(tmp_path, None, {"anything": 1})  # sppdet 0.3: no record
    assert caplog.text == ""


@pytest.mark.parametrize("change", [{"test__nms": 0.45}, {"bbox_reg__enabled": False}, {"device": "cuda"},
                                    {"backbone__weights": "moved/a.pth"}])
def test_test_time_keys_and_paths_may_change_with_a_warning(tmp_path, caplog, change):
    key = next(iter(change)).replace("__", ".")
    with caplog.at_level(logging.WARNING, logger="sppdet"):
        check_trained_config(tmp_path, TRAINED, edited(**change))
    assert "edited after training" in caplog.text and key in caplog.text


@pytest.mark.parametrize("change, key", [({"svm__C": 0.5}, "svm.C"), ({"bbox_reg__lam": 10.0}, "bbox_reg.lam"),
                                         ({"backbone__name": "resnet50"}, "backbone.name"),
                                         ({"svm": {"C": 0.001}}, "svm.epochs")])  # a key left out
def test_any_other_change_is_refused_naming_the_key(tmp_path, change, key):
    with pytest.raises(UserError, match="differs from the configuration this run was trained with") as exc:
        check_trained_config(tmp_path, TRAINED, edited(**change, test__nms=0.45))
    assert key in str(exc.value) and "test.nms" not in str(exc.value)  # only the refused keys are shown
    assert str(tmp_path / "config.yaml") in str(exc.value)


def test_a_key_the_record_lacks_is_no_difference(tmp_path):
    """A key added to sppdet after the run was trained is not in its record: not an edit."""
    check_trained_config(tmp_path, TRAINED, edited(svm__new_key=7))


def test_more_than_four_refused_keys_are_shown_as_four_and_an_ellipsis(tmp_path):
    for n, shown, ellipsis in [(4, 4, False), (5, 4, True)]:
        trained = {"svm": {f"k{i}": i for i in range(n)}}
        current = {"svm": {f"k{i}": i + 1 for i in range(n)}}
        with pytest.raises(UserError) as exc:
            check_trained_config(tmp_path, trained, current)
        assert str(exc.value).count(" → ") == shown and (", …)" in str(exc.value)) == ellipsis
        assert "svm.k0 0 → 1, svm.k1 1 → 2" in str(exc.value)  # sorted, old value → new value


def test_a_recorded_digest_that_disagrees_or_a_damaged_record(tmp_path):
    with pytest.raises(UserError, match=r"model.pt and meta.json disagree .*config_sha256"):
        check_trained_config(tmp_path, TRAINED, edited(), "0" * 64)
    with pytest.raises(UserError, match="model.pt is damaged: its record of the trained configuration is not a "
                                        "mapping"):
        check_trained_config(tmp_path, ["svm"], edited())


def test_read_run_config(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_bytes(b"\xef\xbb\xbfsvm:\n  C: 0.5\n")  # a BOM, as some editors save it
    assert read_run_config(p) == {"svm": {"C": 0.5}}
    p.write_text("")
    assert read_run_config(p) == {}
    p.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must hold a mapping of settings, not a list"):
        read_run_config(p)
    p.write_text("svm: {C: [\n")
    with pytest.raises(UserError, match=r"config.yaml is not valid YAML \(.*line") as exc:
        read_run_config(p)
    assert "\n" not in str(exc.value)
    p.write_bytes(b"svm: \xff\xfe\n")
    with pytest.raises(UserError, match="cannot be read"):
        read_run_config(p)
    with pytest.raises(UserError, match="cannot be read"):
        read_run_config(tmp_path / "missing.yaml")


def test_check_finite_names_the_first_bad_tensor(tmp_path):
    good = {"svm_W": torch.ones(2, 3), "svm_b": torch.zeros(2), "bbox_W": None, "feat_scale": 1.5,
            "pool5_scale": 2, "head": {"fc6.weight": torch.ones(2, 2)},
            "upper_head": {"state": {"conv.weight": torch.ones(1)}, "note": math.nan},
            "labels": torch.tensor([1, 2]), "other": math.nan}  # keys it does not check
    check_finite(tmp_path / "model.pt", good)
    for key, value, name in [
        ("svm_b", torch.tensor([0.0, math.inf]), "svm_b"),
        ("feat_scale", math.nan, "feat_scale"),
        ("head", {"fc6.weight": torch.tensor([math.nan])}, "head.fc6.weight"),
        ("upper_head", {"state": {"conv.weight": torch.tensor([-math.inf])}}, "upper_head.conv.weight"),
    ]:
        with pytest.raises(UserError, match=rf"model.pt is damaged: {name} holds NaN or infinite values"):
            check_finite(tmp_path / "model.pt", {**good, key: value})
    # integer tensors cannot hold NaN; a bool is not a number
    check_finite(tmp_path / "model.pt", {**good, "svm_b": torch.tensor([1, 2]), "feat_scale": True})
