import pytest

from sppdet.config import Config, load_config
from sppdet.errors import UserError


def test_defaults_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("features:\n  scales: [480, 688]\nsvm:\n  C: 0.01\n")
    cfg = load_config(p, ["svm.C=0.5", "finetune.enabled=false", "features.levels=[4,3,2,1]"])
    assert cfg.features.scales == [480, 688] and cfg.svm.C == 0.5
    assert cfg.finetune.enabled is False and cfg.features.levels == [4, 3, 2, 1]
    assert load_config().to_dict() == Config().to_dict()


@pytest.mark.parametrize("override, msg", [
    ("svm.nope=1", "unknown key 'svm.nope'"),
    ("svm.C=abc", "svm.C should be like"),
    ("features.scales=[]", "features.scales"),
    ("method=fast", "method must be"),
    ("noequals", "key=value"),
])
def test_bad_overrides_are_user_errors(override, msg):
    with pytest.raises(UserError, match=msg):
        load_config(None, [override])


def test_shipped_configs_load():
    from pathlib import Path

    for p in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")):
        load_config(p)


def test_test_time_overrides_only():
    from sppdet.config import override_config

    cfg = override_config(Config(), ["bbox_reg.enabled=false", "test.nms=0.4"])
    assert cfg.bbox_reg.enabled is False and cfg.test.nms == 0.4
    with pytest.raises(UserError, match="only test"):
        override_config(Config(), ["svm.C=1"])


def test_every_field_carries_its_rule_in_its_metadata():
    """A key cannot be added without its rule: each leaf field's metadata holds a Rule, and
    a dataclass with a bare field is refused when its rules are read."""
    import dataclasses

    from sppdet.config import RULES, Rule, rules_of, ruled

    def leaves(cls):
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                yield from leaves(type(default))
            else:
                yield f

    fs = list(leaves(Config))
    assert len(fs) == len(RULES) and all(isinstance(f.metadata.get("rule"), Rule) for f in fs)

    @dataclasses.dataclass
    class Section:
        good: int = ruled(Rule("int", "[0, 1]"), 0)
        bare: int = 1

    with pytest.raises(TypeError, match="bare has no validation rule"):
        rules_of(Section)
