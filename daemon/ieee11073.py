"""IEEE-11073-20601 FLOAT (32-bit) and SFLOAT (16-bit) numbers, as carried in GATT health profiles.

A value is ``mantissa * 10**exponent``: FLOAT has an 8-bit signed exponent and a 24-bit signed
mantissa, SFLOAT a 4-bit signed exponent and a 12-bit signed mantissa (both two's complement,
exponent in the high bits). Five mantissa codes at the edge of the range are reserved for special
values; they are returned as :class:`SpecialValue`, never as a float, so a NaN can never reach an
alarm rule as a number.

The exponent carries precision (37.0 with exponent -1 is not the same reading as 37), so encoders
take it explicitly and round the value to it.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import Enum


class SpecialValue(Enum):
    NAN = "NaN"
    NRES = "NRes"  # "not at this resolution": the value does not fit the representation
    POSITIVE_INFINITY = "+INF"
    NEGATIVE_INFINITY = "-INF"
    RESERVED = "Reserved"  # reserved for future use by the standard


# Raw codes with exponent 0 (ecosystem.md, "IEEE-11073 number formats").
_SFLOAT_SPECIALS: dict[int, SpecialValue] = {
    0x07FF: SpecialValue.NAN,
    0x0800: SpecialValue.NRES,
    0x07FE: SpecialValue.POSITIVE_INFINITY,
    0x0802: SpecialValue.NEGATIVE_INFINITY,
    0x0801: SpecialValue.RESERVED,
}
_FLOAT_SPECIALS: dict[int, SpecialValue] = {
    0x007FFFFF: SpecialValue.NAN,
    0x00800000: SpecialValue.NRES,
    0x007FFFFE: SpecialValue.POSITIVE_INFINITY,
    0x00800002: SpecialValue.NEGATIVE_INFINITY,
    0x00800001: SpecialValue.RESERVED,
}
_SFLOAT_CODES = {special: raw for raw, special in _SFLOAT_SPECIALS.items()}
_FLOAT_CODES = {special: raw for raw, special in _FLOAT_SPECIALS.items()}

# Largest finite mantissa magnitude: the codes above it are the special values.
SFLOAT_MANTISSA_MAX = 2045
FLOAT_MANTISSA_MAX = 8_388_605
SFLOAT_EXPONENT_RANGE = range(-8, 8)
FLOAT_EXPONENT_RANGE = range(-128, 128)


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def _decode(
    raw: int, mantissa_bits: int, total_bits: int, specials: dict[int, SpecialValue], limit: int
) -> float | SpecialValue:
    if not 0 <= raw < (1 << total_bits):
        raise ValueError(f"raw value {raw:#x} does not fit in {total_bits} bits")
    if raw in specials:
        return specials[raw]
    mantissa = _signed(raw & ((1 << mantissa_bits) - 1), mantissa_bits)
    exponent = _signed(raw >> mantissa_bits, total_bits - mantissa_bits)
    if abs(mantissa) > limit:
        # A special-value mantissa with a non-zero exponent is not defined by the standard.
        # Treat it as reserved: it must never be read as a number.
        return SpecialValue.RESERVED
    # Integer arithmetic, then one correctly rounded division: 3725 / 100 is exactly the
    # double nearest 37.25, whereas 3725 * 0.01 is not.
    if exponent >= 0:
        return float(mantissa * 10**exponent)
    return mantissa / 10**-exponent


def decode_sfloat(raw: int) -> float | SpecialValue:
    """Decode a 16-bit SFLOAT given as an unsigned integer."""
    return _decode(raw, 12, 16, _SFLOAT_SPECIALS, SFLOAT_MANTISSA_MAX)


def decode_float(raw: int) -> float | SpecialValue:
    """Decode a 32-bit FLOAT given as an unsigned integer."""
    return _decode(raw, 24, 32, _FLOAT_SPECIALS, FLOAT_MANTISSA_MAX)


def _encode(
    value: float | SpecialValue,
    exponent: int,
    mantissa_bits: int,
    total_bits: int,
    codes: dict[SpecialValue, int],
    limit: int,
    exponents: range,
    kind: str,
) -> int:
    if isinstance(value, float) and math.isnan(value):
        value = SpecialValue.NAN
    elif isinstance(value, float) and math.isinf(value):
        value = SpecialValue.POSITIVE_INFINITY if value > 0 else SpecialValue.NEGATIVE_INFINITY
    if isinstance(value, SpecialValue):
        return codes[value]
    if exponent not in exponents:
        raise ValueError(
            f"{kind} exponent {exponent} outside {exponents.start}..{exponents.stop - 1}"
        )
    try:
        # repr() is the shortest decimal that round-trips, so 36.65 scales to exactly 3665.
        scaled = Decimal(repr(float(value))).scaleb(-exponent)
        mantissa = int(scaled.to_integral_value(rounding=ROUND_HALF_EVEN))
    except (InvalidOperation, OverflowError) as exc:  # pragma: no cover - NaN/inf handled above
        raise ValueError(f"cannot encode {value!r} as {kind}") from exc
    if abs(mantissa) > limit:
        raise ValueError(
            f"{value!r} with exponent {exponent} needs mantissa {mantissa}, "
            f"beyond the {kind} limit of ±{limit}"
        )
    exponent_bits = total_bits - mantissa_bits
    return ((exponent & ((1 << exponent_bits) - 1)) << mantissa_bits) | (
        mantissa & ((1 << mantissa_bits) - 1)
    )


def encode_sfloat(value: float | SpecialValue, exponent: int = 0) -> int:
    """Encode ``value`` rounded to ``10**exponent`` as an unsigned 16-bit SFLOAT.

    Float NaN/±inf map to the special values. Raises ValueError when the rounded value does not
    fit the 12-bit mantissa or the exponent is outside -8..7.
    """
    return _encode(
        value, exponent, 12, 16, _SFLOAT_CODES, SFLOAT_MANTISSA_MAX, SFLOAT_EXPONENT_RANGE, "SFLOAT"
    )


def encode_float(value: float | SpecialValue, exponent: int = 0) -> int:
    """Encode ``value`` rounded to ``10**exponent`` as an unsigned 32-bit FLOAT.

    ``encode_float(37.25, exponent=-2)`` is mantissa 3725, exponent -2. Raises ValueError when the
    rounded value does not fit the 24-bit mantissa or the exponent is outside -128..127.
    """
    return _encode(
        value, exponent, 24, 32, _FLOAT_CODES, FLOAT_MANTISSA_MAX, FLOAT_EXPONENT_RANGE, "FLOAT"
    )


def _need(data: bytes | memoryview, offset: int, size: int, kind: str) -> None:
    if offset < 0 or len(data) - offset < size:
        raise ValueError(f"{kind} at offset {offset} needs {size} bytes, have {len(data)}")


def sfloat_from_bytes(data: bytes | memoryview, offset: int = 0) -> float | SpecialValue:
    """Decode the little-endian SFLOAT at ``data[offset:offset + 2]``."""
    _need(data, offset, 2, "SFLOAT")
    return decode_sfloat(int.from_bytes(data[offset : offset + 2], "little"))


def float_from_bytes(data: bytes | memoryview, offset: int = 0) -> float | SpecialValue:
    """Decode the little-endian FLOAT at ``data[offset:offset + 4]``."""
    _need(data, offset, 4, "FLOAT")
    return decode_float(int.from_bytes(data[offset : offset + 4], "little"))


def sfloat_to_bytes(value: float | SpecialValue, exponent: int = 0) -> bytes:
    """Little-endian SFLOAT bytes (see :func:`encode_sfloat`)."""
    return encode_sfloat(value, exponent).to_bytes(2, "little")


def float_to_bytes(value: float | SpecialValue, exponent: int = 0) -> bytes:
    """Little-endian FLOAT bytes (see :func:`encode_float`)."""
    return encode_float(value, exponent).to_bytes(4, "little")
