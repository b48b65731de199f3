"""Bounds for input the hub does not control: MQTT payloads from the network (acks, receipts,
Home Assistant's status), parsed only once they are known to be small and shallow.

Why a module of its own: CPython's ``json.loads`` recurses once per nesting level, so 100,000
nested brackets raise RecursionError (a process-wide hazard, not a ValueError), and a payload of
any size is parsed into objects several times its size. The shell calls :func:`parse_bounded_json`
(or :func:`validate_bounded` for a pydantic model) for every untrusted payload; a refusal is an
:class:`UntrustedInputError` with a short ``reason`` to count and log, never the content.

Pure: no I/O, no logging, no clock.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

# Acks and receipts are a few hundred bytes; 4 KiB leaves room for a long note.
DEFAULT_MAX_BYTES = 4096
# Acks and receipts are flat objects; a little nesting for future fields.
DEFAULT_MAX_DEPTH = 16

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}

ModelT = TypeVar("ModelT", bound=BaseModel)


class UntrustedInputError(ValueError):
    """An untrusted payload refused; ``reason`` is one of the REASONS, safe to log and count."""

    REASONS = ("too_large", "too_deep", "not_utf8", "not_json", "invalid")

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in self.REASONS
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH


def nesting_depth(text: str, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays/objects in ``text``, brackets inside strings not counted.

    Linear time, no recursion, constant extra memory besides one string-free copy of the text;
    with ``stop_above`` it returns as soon as the depth exceeds it. For malformed text (an
    unterminated string) it may count too deep, which only refuses what json would refuse.
    """
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub("", text)):
        depth += _DEPTH_STEP[match.group()]
        if depth > deepest:
            deepest = depth
            if stop_above is not None and deepest > stop_above:
                break
    return deepest


def parse_bounded_json(payload: bytes, limits: Limits = Limits()) -> Any:
    """``json.loads(payload)`` once the payload is within ``limits``; else UntrustedInputError.

    The size is checked before anything else is done with the bytes, the depth before parsing.
    """
    if len(payload) > limits.max_bytes:
        raise UntrustedInputError("too_large", f"{len(payload)} bytes, limit {limits.max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise UntrustedInputError("not_utf8") from None
    if nesting_depth(text, stop_above=limits.max_depth) > limits.max_depth:
        raise UntrustedInputError("too_deep", f"deeper than {limits.max_depth}")
    try:
        return json.loads(text)
    except RecursionError:  # cannot happen within the depth bound; kept as a last guard
        raise UntrustedInputError("too_deep") from None
    except ValueError as exc:
        raise UntrustedInputError("not_json", f"at position {getattr(exc, 'pos', '?')}") from None


def validate_bounded(payload: bytes, model: type[ModelT], limits: Limits = Limits()) -> ModelT:
    """Bounded parse, then pydantic validation; a schema error is reason ``invalid``."""
    data = parse_bounded_json(payload, limits)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = ",".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()[:5])
        raise UntrustedInputError("invalid", f"fields {fields}") from None
