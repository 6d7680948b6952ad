"""sppdet.errors: report_errors, the CLI's handling of a command's outcome, on small bodies."""
from sppdet.errors import UserError, report_errors


def test_the_exit_code_passes_through(capsys):
    assert report_errors("tool", lambda: 0, "nothing kept") == 0
    assert report_errors("tool", lambda: 3, "nothing kept") == 3
    assert capsys.readouterr().err == ""


def test_a_user_error_is_one_line_and_exit_2(capsys):
    def body():
        raise UserError("the data folder is empty")

    assert report_errors("tool", body, "nothing kept") == 2
    assert capsys.readouterr().err == "tool: error: the data folder is empty\n"

    class Own(UserError):
        exit_code = 5

    def own():
        raise Own("other")

    assert report_errors("tool", own, "x") == 5


def test_ctrl_c_says_what_was_kept_and_exit_130(capsys):
    def body():
        raise KeyboardInterrupt

    assert report_errors("tool", body, "finished images are kept") == 130
    assert capsys.readouterr().err == "\ntool: interrupted; finished images are kept\n"


def test_a_bug_keeps_its_traceback():
    def body():
        raise ZeroDivisionError("a bug")

    try:
        report_errors("tool", body, "x")
    except ZeroDivisionError as exc:
        assert str(exc) == "a bug"
    else:
        raise AssertionError("a bug must not be turned into an exit code")
