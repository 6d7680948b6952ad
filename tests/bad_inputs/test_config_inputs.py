"""Bad configuration values (a run's, a --set, a classifier's, synth's counts) are refused
up front with one UserError naming the key and its range."""
import dataclasses
import math
from pathlib import Path

import pytest

from sppdet.config import RULES, Config, config_from_dict, load_config
from sppdet.config import TestConfig as _TestConfig  # (not a class of tests)
from sppdet.errors import UserError


@pytest.mark.parametrize("override, message", [
    ("test.nms=2", "test.nms must be in (0, 1], got 2"),
    ("test.nms=-1", "test.nms must be in (0, 1], got -1"),
    ("test.max_per_image=-1", "test.max_per_image must be in [1, "),
    ("test.score_thresh=.nan", "test.score_thresh must be a finite number, got nan"),
    ("proposals.max_boxes=0", "proposals.max_boxes must be in [1, "),
    ("proposals.max_boxes=-5", "proposals.max_boxes must be in [1, "),
    ("svm.epochs=0", "svm.epochs must be in [1, "),
    ("features.max_size=0", "features.max_size must be in [1, "),
    ("bbox_reg.min_iou=5", "bbox_reg.min_iou must be in (0, 1], got 5"),
    ("svm.C=.nan", "svm.C must be a finite number in (0, inf), got nan"),
    ("svm.C=-.inf", "svm.C must be a finite number"),
    ("finetune.lr=-0.1", "finetune.lr must be in (0, inf), got -0.1"),
    ("finetune.fg_fraction=1.5", "finetune.fg_fraction must be in (0, 1]"),
    ("data.test_fraction=-0.2", "data.test_fraction must be in [0, 1]"),
    ("features.levels=[6, 0]", "features.levels must be a non-empty list of integers in [1, 64]"),
    ("features.levels=[2.5]", "features.levels must be a non-empty list of integers"),
    ("features.scales=[-688]", "features.scales must be a non-empty list of integers in [1, "),
    ("features.scales=['a']", "features.scales must be a non-empty list of integers"),
    ("data.classes=[1, 2]", "data.classes must be a list of distinct non-empty strings"),
    ("data.classes=[cat, cat]", "data.classes must be a list of distinct non-empty strings"),
    ("backbone.weights=[a]", "backbone.weights must be a non-empty string"),
    ("proposals.external_dir=3", "proposals.external_dir must be a non-empty string"),
    ("backbone.name=''", "backbone.name must be a non-empty string"),
    ("seed=-1", "seed must be in [0, "),
    ("finetune.bg_iou_low=0.7", "finetune.bg_iou_low (0.7) must be below finetune.bg_iou_high"),
    ("svm.evict_thresh=0", "svm.evict_thresh (0) must not exceed svm.hard_thresh"),
])
def test_bad_config_values_are_refused_with_the_range(override, message):
    with pytest.raises(UserError) as exc:
        load_config(None, [override])
    assert message in str(exc.value)


def _fields(cls, prefix=""):
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            yield from _fields(type(default), f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def test_every_config_field_has_a_rule_and_every_rule_bites():
    assert set(_fields(Config)) == set(RULES)
    Config().validate()
    for key, rule in RULES.items():
        section, _, name = key.rpartition(".")
        bad = []
        if rule.kind in ("int", "float") and rule.interval:
            lo = float(rule.interval[1:-1].split(",")[0])
            if math.isfinite(lo):  # just below the lower bound (or at it, when it is excluded)
                bad.append(int(lo) - 1 if rule.kind == "int" else (lo if rule.interval[0] == "(" else lo - 0.5))
        if rule.kind == "float":
            bad += [float("nan"), float("inf")]
        if rule.kind in ("int", "bool", "choice", "str"):
            bad.append([1])  # a list where a scalar belongs
        if rule.kind == "ints":
            bad += ["x", [], [0]]
        if rule.kind == "strs":
            bad += [7, "cat"]
        for value in bad:
            tree = Config().to_dict()
            (tree[section] if section else tree)[name] = value
            with pytest.raises(UserError, match=key.replace(".", r"\.")):
                config_from_dict(tree)  # the path a run's config.yaml takes


def test_config_built_in_code_is_checked_too():
    cfg = Config(test=_TestConfig(nms=float("nan")))
    with pytest.raises(UserError, match="test.nms"):
        cfg.validate()


def test_classifier_config_and_synth_counts():
    from sppdet.classification import ClsConfig
    from sppdet.datasets.synth import write_synthetic

    for kwargs, key in [({"levels": [0]}, "levels"), ({"sizes": [0]}, "sizes"), ({"epochs": 0}, "epochs"),
                        ({"batch_size": -1}, "batch_size"), ({"lr": float("nan")}, "lr"),
                        ({"hidden": 0}, "hidden"), ({"train_blocks": -1}, "train_blocks")]:
        with pytest.raises(UserError, match=f"classifier config: {key} must be"):
            ClsConfig(**kwargs)
    for n in (0, -3):
        with pytest.raises(UserError, match="number of images must be a positive integer"):
            write_synthetic("/nonexistent/never/created", n)
    assert not Path("/nonexistent/never").exists()
