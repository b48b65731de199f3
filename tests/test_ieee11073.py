"""IEEE-11073-20601 FLOAT/SFLOAT: hand-written golden vectors, special values, round-trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.ieee11073 import (
    FLOAT_MANTISSA_MAX,
    SFLOAT_MANTISSA_MAX,
    SpecialValue,
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
    float_from_bytes,
    float_to_bytes,
    sfloat_from_bytes,
    sfloat_to_bytes,
)

# --- golden vectors: raw value -> number. Exponent is the high nibble/byte, two's complement.


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0x0072, 114.0),  # exponent 0, mantissa 0x072 = 114
        (0xF16B, 36.3),  # exponent 0xF = -1, mantissa 0x16B = 363
        (0x0FFF, -1.0),  # exponent 0, mantissa 0xFFF = -1
        (0x2001, 100.0),  # exponent 2, mantissa 1
        (0x07FD, 2045.0),  # largest finite mantissa
        (0x0803, -2045.0),  # smallest finite mantissa
        (0x8001, 1e-8),  # exponent 0x8 = -8, mantissa 1
        (0x0000, 0.0),
    ],
)
def test_sfloat_golden(raw: int, expected: float) -> None:
    assert decode_sfloat(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0xFE000E8D, 37.25),  # exponent 0xFE = -2, mantissa 0x000E8D = 3725
        (0xFF00016C, 36.4),  # exponent -1, mantissa 364
        (0xFFFFFE70, -40.0),  # exponent -1, mantissa 0xFFFE70 = -400
        (0xFF0003DA, 98.6),  # exponent -1, mantissa 986 (a °F reading)
        (0x007FFFFD, 8_388_605.0),  # largest finite mantissa, exponent 0
        (0x03000001, 1000.0),  # exponent 3, mantissa 1
    ],
)
def test_float_golden(raw: int, expected: float) -> None:
    assert decode_float(raw) == expected


SPECIALS = [
    # (SFLOAT raw, FLOAT raw, value) from ecosystem.md "IEEE-11073 number formats"
    (0x07FF, 0x007FFFFF, SpecialValue.NAN),
    (0x0800, 0x00800000, SpecialValue.NRES),
    (0x07FE, 0x007FFFFE, SpecialValue.POSITIVE_INFINITY),
    (0x0802, 0x00800002, SpecialValue.NEGATIVE_INFINITY),
    (0x0801, 0x00800001, SpecialValue.RESERVED),
]


@pytest.mark.parametrize(("sfloat", "float32", "special"), SPECIALS)
def test_special_values_decode_as_enum_not_float(
    sfloat: int, float32: int, special: SpecialValue
) -> None:
    assert decode_sfloat(sfloat) is special
    assert decode_float(float32) is special


@pytest.mark.parametrize(("sfloat", "float32", "special"), SPECIALS)
def test_special_values_encode_to_their_codes(
    sfloat: int, float32: int, special: SpecialValue
) -> None:
    assert encode_sfloat(special) == sfloat
    assert encode_float(special, exponent=-2) == float32  # exponent is irrelevant for specials


def test_the_nxp_header_32_bit_specials_are_numbers_not_specials() -> None:
    # ecosystem.md pitfall: an NXP header gives NaN as 0x07FFFFFF. That is exponent 7 with
    # mantissa 0xFFFFFF (-1), a plain number; NaN is 0x007FFFFF.
    assert decode_float(0x07FFFFFF) == -1e7
    assert decode_float(0x08000000) == 0.0  # exponent 8, mantissa 0 (the NXP "NRes")


@pytest.mark.parametrize("raw", [0x17FF, 0xE800, 0x1801, 0xF7FE])
def test_special_mantissa_with_nonzero_exponent_is_reserved(raw: int) -> None:
    assert decode_sfloat(raw) is SpecialValue.RESERVED


def test_encode_float_uses_the_given_exponent() -> None:
    assert encode_float(37.25, exponent=-2) == 0xFE000E8D
    assert encode_float(36.4, exponent=-1) == 0xFF00016C
    assert encode_float(-40.0, exponent=-1) == 0xFFFFFE70
    assert encode_sfloat(36.3, exponent=-1) == 0xF16B
    assert encode_sfloat(100.0, exponent=2) == 0x2001


def test_encode_rounds_to_the_exponent() -> None:
    assert encode_float(37.256, exponent=-2) == encode_float(37.26, exponent=-2)
    assert decode_float(encode_float(37.256, exponent=-1)) == 37.3
    # 36.65 is stored as 36.649999...; scaling by the decimal repr keeps it at 3665.
    assert decode_float(encode_float(36.65, exponent=-2)) == 36.65


def test_float_nan_and_infinity_become_special_values() -> None:
    assert encode_float(math.nan) == 0x007FFFFF
    assert encode_float(math.inf) == 0x007FFFFE
    assert encode_sfloat(-math.inf) == 0x0802


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: encode_sfloat(2046), "limit"),
        (lambda: encode_sfloat(204.6, exponent=-1), "limit"),
        (lambda: encode_sfloat(1, exponent=8), "exponent"),
        (lambda: encode_sfloat(1, exponent=-9), "exponent"),
        (lambda: encode_float(8_388_606), "limit"),
        (lambda: encode_float(1, exponent=128), "exponent"),
    ],
)
def test_unrepresentable_values_raise(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=message):
        call()


def test_raw_out_of_range_raises() -> None:
    with pytest.raises(ValueError):
        decode_sfloat(0x10000)
    with pytest.raises(ValueError):
        decode_float(-1)


def test_little_endian_byte_helpers() -> None:
    assert float_from_bytes(bytes.fromhex("8d0e00fe")) == 37.25
    assert sfloat_from_bytes(bytes.fromhex("006bf1"), offset=1) == 36.3
    assert float_to_bytes(37.25, exponent=-2) == bytes.fromhex("8d0e00fe")
    assert sfloat_to_bytes(36.3, exponent=-1) == bytes.fromhex("6bf1")
    assert sfloat_to_bytes(SpecialValue.NAN) == bytes.fromhex("ff07")


def test_byte_helpers_reject_short_input() -> None:
    with pytest.raises(ValueError, match="needs 4 bytes"):
        float_from_bytes(b"\x00\x00\x00")
    with pytest.raises(ValueError, match="needs 2 bytes"):
        sfloat_from_bytes(b"\x00\x00", offset=1)


# --- properties


def _sfloat_exponent(raw: int) -> int:
    e = raw >> 12
    return e - 16 if e >= 8 else e


def _float_exponent(raw: int) -> int:
    e = raw >> 24
    return e - 256 if e >= 128 else e


@settings(max_examples=1000)
@given(st.integers(0, 0xFFFF))
def test_every_sfloat_decodes_and_finite_values_reencode_to_the_same_bits(raw: int) -> None:
    value = decode_sfloat(raw)
    if isinstance(value, SpecialValue):
        return
    assert math.isfinite(value)
    assert encode_sfloat(value, _sfloat_exponent(raw)) == raw


@settings(max_examples=1000)
@given(st.integers(0, 0xFFFFFFFF))
def test_every_float_decodes_and_finite_values_reencode_to_the_same_bits(raw: int) -> None:
    value = decode_float(raw)
    if isinstance(value, SpecialValue):
        return
    assert math.isfinite(value)
    assert encode_float(value, _float_exponent(raw)) == raw


@settings(max_examples=500)
@given(
    st.integers(-SFLOAT_MANTISSA_MAX, SFLOAT_MANTISSA_MAX),
    st.integers(-8, 7),
)
def test_sfloat_value_round_trip(mantissa: int, exponent: int) -> None:
    value = mantissa * 10**exponent if exponent >= 0 else mantissa / 10**-exponent
    assert sfloat_from_bytes(sfloat_to_bytes(value, exponent)) == value


@settings(max_examples=500)
@given(
    st.integers(-FLOAT_MANTISSA_MAX, FLOAT_MANTISSA_MAX),
    st.integers(-128, 127),
)
def test_float_value_round_trip(mantissa: int, exponent: int) -> None:
    value = float(mantissa * 10**exponent) if exponent >= 0 else mantissa / 10**-exponent
    assert float_from_bytes(float_to_bytes(value, exponent)) == value
