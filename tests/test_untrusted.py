"""daemon/untrusted.py: bounded parsing of untrusted JSON (acks, receipts)."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from daemon.untrusted import (
    Limits,
    UntrustedInputError,
    nesting_depth,
    parse_bounded_json,
    validate_bounded,
)


class Receipt(BaseModel):
    event_id: str
    consumer: str


def test_plain_json_within_limits_parses() -> None:
    assert parse_bounded_json(b'{"event_id": "e1", "consumer": "team-a"}') == {
        "event_id": "e1", "consumer": "team-a"}
    assert validate_bounded(b'{"event_id": "e1", "consumer": "team-a"}', Receipt) == Receipt(
        event_id="e1", consumer="team-a")


def test_stdlib_json_recurses_on_deep_nesting() -> None:
    # Why the depth bound exists: json.loads does not fail with a ValueError here.
    with pytest.raises(RecursionError):
        json.loads("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize(("payload", "limits", "reason"), [
    (b"[" * 100_000 + b"]" * 100_000, Limits(max_bytes=1_000_000), "too_deep"),
    (b'{"a":' * 17 + b"1" + b"}" * 17, Limits(), "too_deep"),
    (b'{"note": "' + b"x" * 5000 + b'"}', Limits(), "too_large"),
    (b"\xff\xfe{}", Limits(), "not_utf8"),
    (b'{"event_id": ', Limits(), "not_json"),
])
def test_refusals_name_their_reason(payload: bytes, limits: Limits, reason: str) -> None:
    with pytest.raises(UntrustedInputError) as info:
        parse_bounded_json(payload, limits)
    assert info.value.reason == reason


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    text = json.dumps({"note": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[ {{{{ \\\" ]]"})
    assert nesting_depth(text) == 1
    assert parse_bounded_json(text.encode())["note"].startswith("[[[")


def test_a_schema_error_is_invalid_and_does_not_echo_the_values() -> None:
    with pytest.raises(UntrustedInputError) as info:
        validate_bounded(b'{"event_id": 38.9, "consumer": "temperature 38.9"}', Receipt)
    assert info.value.reason == "invalid"
    assert "38.9" not in str(info.value)


def peak_bytes(fn: Any) -> int:
    """tracemalloc peak while ``fn`` runs, which must refuse its input."""
    tracemalloc.start()
    with pytest.raises(UntrustedInputError):
        fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_a_deep_megabyte_is_refused_without_a_memory_spike() -> None:
    deep = b"[" * 500_000 + b"]" * 500_000  # 1 MB, half a million levels
    # Allowed a megabyte so that the depth check, not the size check, refuses it.
    peak = peak_bytes(lambda: parse_bounded_json(deep, Limits(max_bytes=2_000_000)))
    # The decoded text and its string-free copy (1 MB each), where parsing would build half a
    # million lists (about 28 MB) before recursing to death.
    assert peak < 3 * 1024 * 1024, peak
    # And at the default 4 KiB limit it is refused by size, touching nothing.
    assert peak_bytes(lambda: parse_bounded_json(deep)) < 64 * 1024


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=200)
def test_within_limits_it_is_json_loads(value: Any) -> None:
    payload = json.dumps(value).encode()
    limits = Limits(max_bytes=1_000_000, max_depth=64)
    assert parse_bounded_json(payload, limits) == json.loads(payload)


@given(st.binary(max_size=300) | st.text(alphabet='[]{}"\\:,1a ', max_size=300).map(str.encode))
@settings(max_examples=300)
def test_any_bytes_parse_or_are_refused_never_crash(payload: bytes) -> None:
    try:
        parse_bounded_json(payload, Limits(max_bytes=256, max_depth=8))
    except UntrustedInputError as exc:
        assert exc.reason in UntrustedInputError.REASONS
