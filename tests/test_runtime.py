"""The allocator setting: applied on glibc, idempotent, and possible to turn off."""
import os
import platform
import subprocess
import sys

import pytest

CHECK = ("import sppdet.runtime as r; a = r.tune_cpu_allocator(); b = r.tune_cpu_allocator(); "
         "assert a == b; print(a)")


def tuned_in_fresh_process(**env_extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "SPPDET_NO_MALLOC_TUNING"}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_allocator_tuning_applies_and_can_be_turned_off():
    assert tuned_in_fresh_process() == "True"
    assert tuned_in_fresh_process(SPPDET_NO_MALLOC_TUNING="1") == "False"
