"""The C library's two calls: the kernel's clock-synchronised flag (adjtimex, asked on every
heartbeat) and glibc's malloc_trim."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from daemon import clock_sync, libc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex is Linux's")
def test_the_kernel_answers_and_libc_is_looked_up_once() -> None:
    libc.libc.cache_clear()
    answers = {clock_sync.clock_synchronized() for _ in range(20)}
    # A read-only adjtimex needs no privilege: the kernel says yes or no, never "cannot ask".
    assert answers <= {True, False} and len(answers) == 1, answers
    # find_library runs `ldconfig -p`: once per process, not once per heartbeat.
    assert libc.libc.cache_info().misses == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's")
def test_trimming_the_heap_gives_freed_memory_back() -> None:
    def rss_kb() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    # Many small blocks freed in the middle of the heap: glibc keeps them until trimmed.
    blocks = [bytearray(2000) for _ in range(20_000)]
    keep = blocks[-1]
    del blocks
    before = rss_kb()
    assert libc.trim_heap() is True
    assert rss_kb() < before - 10_000, (before, rss_kb())  # tens of MB freed, most returned
    assert keep
