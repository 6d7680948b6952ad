"""The test suite's own layout: no test file over 500 lines (a file that grows past it is split
by what it tests, as tests/bad_inputs/ was)."""
from pathlib import Path

TESTS = Path(__file__).resolve().parent
LIMIT = 500


def lines_of(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


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
