"""sppdet.locking: one holder per folder (a second is refused, the lock goes with its block or
its process), what held_elsewhere sees (held, left behind, a link, a folder, read-only), and the
refusal to write through links."""
import os
import subprocess
import sys

import pytest

from sppdet.errors import UserError
from sppdet.locking import LOCK_NAME, check_plain_file, folder_lock, held_elsewhere


def test_check_plain_file(tmp_path):
    check_plain_file(tmp_path / "none.json", "--out")  # not there yet: fine
    (tmp_path / "f.json").write_text("x")
    check_plain_file(tmp_path / "f.json", "--out")
    (tmp_path / "d.json").mkdir()
    with pytest.raises(UserError, match="d.json exists and is not a regular file"):
        check_plain_file(tmp_path / "d.json", "--out")
    for target in (tmp_path / "f.json", tmp_path / "missing"):  # a link, dangling or not
        link = tmp_path / f"link-to-{target.name}"
        link.symlink_to(target)
        with pytest.raises(UserError, match=r"is a symbolic link; sppdet does not write through links into "
                                            r"the run"):
            check_plain_file(link, "the run")


def test_a_second_holder_is_refused_until_the_first_block_ends(tmp_path):
    assert not held_elsewhere(tmp_path)  # no lock file yet
    with folder_lock(tmp_path, "--out"):
        assert (tmp_path / LOCK_NAME).is_file() and held_elsewhere(tmp_path)
        with pytest.raises(UserError, match=rf"another sppdet command is writing to {tmp_path} \(--out\)"):
            with folder_lock(tmp_path):
                pass
    assert not held_elsewhere(tmp_path)  # the file stays, the lock is gone
    with folder_lock(tmp_path):
        pass


def test_the_lock_is_released_when_the_block_raises(tmp_path):
    with pytest.raises(KeyError):
        with folder_lock(tmp_path):
            raise KeyError("boom")
    assert not held_elsewhere(tmp_path)


def test_a_lock_held_by_another_process_and_gone_with_it(tmp_path):
    code = ("import sys, time; from sppdet.locking import folder_lock\n"
            f"with folder_lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert held_elsewhere(tmp_path)
        with pytest.raises(UserError, match="another sppdet command"):
            with folder_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert not held_elsewhere(tmp_path)  # killed: the kernel dropped its lock, the file it left blocks nothing
    with folder_lock(tmp_path):
        pass


def test_held_elsewhere_never_follows_links_or_reads_folders(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).symlink_to(other / LOCK_NAME)
    with folder_lock(other):
        assert held_elsewhere(other) and not held_elsewhere(run)  # the link is not followed
    (run / LOCK_NAME).unlink()
    (run / LOCK_NAME).mkdir()
    assert not held_elsewhere(run)
    with pytest.raises(UserError, match="not a regular file"):
        with folder_lock(run):
            pass
    assert not held_elsewhere(tmp_path / "missing")


def test_a_lock_file_in_the_way_as_a_link_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).symlink_to(target)
    with pytest.raises(UserError, match="symbolic link"):
        with folder_lock(run, "the run"):
            pass
    assert target.read_text() == "keep"


def test_held_elsewhere_only_reads(tmp_path):
    with folder_lock(tmp_path):
        pass
    before = sorted(os.listdir(tmp_path))
    (tmp_path / LOCK_NAME).chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        assert not held_elsewhere(tmp_path)
    finally:
        tmp_path.chmod(0o755)
    assert sorted(os.listdir(tmp_path)) == before
