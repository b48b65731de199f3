"""The kernel's clock-synchronised flag (adjtimex), asked on every heartbeat."""

from __future__ import annotations

import sys

import pytest

from daemon import clock_sync


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex is Linux's")
def test_the_kernel_answers_and_libc_is_looked_up_once() -> None:
    clock_sync._libc.cache_clear()
    answers = {clock_sync.clock_synchronized() for _ in range(20)}
    # A read-only adjtimex needs no privilege: the kernel says yes or no, never "cannot ask".
    assert answers <= {True, False} and len(answers) == 1, answers
    # find_library runs `ldconfig -p`: once per process, not once per heartbeat.
    assert clock_sync._libc.cache_info().misses == 1
