"""Integration tests skip with a reason when a real component is missing, unless
CRS_REQUIRE_INTEGRATION=1 (set by .ci/run), where a missing component is a failure."""

from __future__ import annotations

import os
import shutil

import pytest


def integration_required() -> bool:
    return os.environ.get("CRS_REQUIRE_INTEGRATION") == "1"


def require_binary(name: str) -> str:
    """Return the path of ``name`` on PATH (or /usr/sbin), or skip/fail the test."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if path:
        return path
    reason = f"{name} is not installed"
    if integration_required():
        pytest.fail(f"{reason} but CRS_REQUIRE_INTEGRATION=1")
    pytest.skip(reason)
