"""The test suite's own layout: no test file over 500 lines (a file that grows past it is split
by what it tests, as tests/bad_inputs/ was), and tests/ mirrors the package: every module of
sppdet has tests/test_<module>.py (a subpackage's module: test_<package>_<module>.py), or is
listed below with the test files that exercise it under other names, or with why it needs none."""
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PKG = TESTS.parent / "sppdet"
LIMIT = 500

# modules whose tests carry another name (older files, or tests that go through the public API
# or the command line); each entry names files that exercise the module
TESTED_UNDER = {
    "api.classifier": ["test_classification.py"],
    "api.detection": ["test_api.py", "bad_inputs/test_detect_inputs.py"],
    "api.evaluation": ["test_api.py", "bad_inputs/test_api_inputs.py"],
    "api.export": ["test_onnx_engine.py"],
    "api.measure": ["test_benchmark.py", "test_evaluation_proposals.py"],
    "api.setup": ["test_api.py", "test_own_data.py"],
    "api.training": ["test_api.py", "bad_inputs/test_io_failures.py"],
    "arguments": ["test_api_arguments.py"],
    "demo": ["test_e2e_bccd.py"],
    "onnx_export": ["test_onnx_engine.py", "test_onnx_graph.py"],  # test_demo_small: needs the ImageNet weights, skipped without them
    "proposals.base": ["test_proposals_registry.py"],
    "proposals.rpn": ["test_rpn.py", "test_faults_rpn.py", "test_faults_anchors.py"],
    "training": ["test_api.py", "test_parallel.py", "test_own_data.py"],
}
# modules without logic of their own to test
NO_LOGIC = {
    "__init__": "the package root: re-exports, and Detector/Detections imported on first use",
    "__main__": "`python -m sppdet`: calls cli.main",
    "version": "the version string",
    "evaluation": "re-exports of evaluation.voc",
    "proposals": "re-exports of its modules",
}


def lines_of(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def modules() -> list[str]:
    out = []
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def mirror(module: str) -> Path:
    return TESTS / f"test_{module.replace('.', '_')}.py"


def test_no_python_file_under_tests_is_over_500_lines():
    files = sorted(TESTS.rglob("*.py"))
    assert TESTS / "conftest.py" in files and TESTS / "bad_inputs" / "conftest.py" in files  # it looks in subfolders
    too_long = {str(p.relative_to(TESTS)): lines_of(p) for p in files if lines_of(p) > LIMIT}
    assert too_long == {}, f"split these by what they test (limit {LIMIT} lines): {too_long}"


def test_the_line_count_is_the_editors(tmp_path):
    # the count an editor shows: a last line without a newline counts, a trailing newline adds none
    (tmp_path / "a.py").write_text("x = 1\ny = 2\n")
    (tmp_path / "b.py").write_text("x = 1\ny = 2")
    assert lines_of(tmp_path / "a.py") == lines_of(tmp_path / "b.py") == 2


def test_every_module_has_its_test_module():
    mods = modules()
    assert {"cli", "datasets.labelimg", "api.setup", "__init__", "datasets"} <= set(mods)
    assert mirror("datasets.labelimg").name == "test_datasets_labelimg.py"
    missing = [m for m in mods if not mirror(m).is_file() and m not in TESTED_UNDER and m not in NO_LOGIC]
    assert missing == [], (f"add tests/test_<module>.py for {missing} (or, for tests under another name, "
                           "an entry in TESTED_UNDER)")


def test_the_lists_are_true_and_not_stale():
    mods = set(modules())
    assert not set(TESTED_UNDER) & set(NO_LOGIC)
    assert sorted((set(TESTED_UNDER) | set(NO_LOGIC)) - mods) == []  # no module that is gone
    assert sorted(m for m in (*TESTED_UNDER, *NO_LOGIC) if mirror(m).is_file()) == []  # mirrored: drop the entry
    absent = sorted(f for files in TESTED_UNDER.values() for f in files if not (TESTS / f).is_file())
    assert absent == []
