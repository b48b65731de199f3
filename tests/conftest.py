from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto, running_mosquitto
from tests.support.requirements import require_binary


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real mosquitto on a free loopback port (skips without mosquitto, unless required)."""
    binary = require_binary("mosquitto")
    with running_mosquitto(binary, tmp_path / "broker") as broker:
        yield broker
