"""runtime/memory.py: the server's malloc thresholds are taken by glibc, and an
administrator's own MALLOC_* settings are left alone."""

import platform

import pytest

from enomalism.runtime.memory import tune_malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_thresholds():
    assert tune_malloc() is True


def test_the_administrators_own_setting_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert tune_malloc() is False
