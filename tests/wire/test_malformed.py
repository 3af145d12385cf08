"""Malformed input: every kind raises a ProtocolError subclass naming the offset.

Each test builds a message by hand from raw fields and checks the exception type, the
offset (counted from the first byte of the IKE header) and what the sentence is about.
"""

from __future__ import annotations

import re

import pytest

from pqike.constants import NotifyType, PayloadType
from pqike.errors import (
    InvalidMajorVersion,
    InvalidSyntax,
    ProtocolError,
    TruncatedMessage,
    UnsupportedCriticalPayload,
)
from pqike.wire import (
    NoncePayload,
    NotifyPayload,
    decode_header,
    decode_message,
    decode_payloads,
    encode_payloads,
)

from . import samples
from .samples import SPI_I, ZERO_SPI

SA, KE, NONCE, NOTIFY, DELETE, TSI = 33, 34, 40, 41, 42, 44
SK, CP, EAP, SKF = 46, 47, 48, 53
BODY = 28  # offset of the first payload


def message(first_type: int, body: bytes, *, length: int | None = None) -> bytes:
    """An IKE_SA_INIT request header followed by ``body``; Length is right unless given."""
    total = 28 + len(body) if length is None else length
    return (
        SPI_I
        + ZERO_SPI
        + bytes([first_type, 0x20, 34, 0x08])
        + bytes(4)
        + total.to_bytes(4, "big")
        + body
    )


def payload(next_type: int, body: bytes, *, length: int | None = None, flags: int = 0) -> bytes:
    """A generic payload header (RFC 7296 3.2) and ``body``; Length is right unless given."""
    size = 4 + len(body) if length is None else length
    return bytes([next_type, flags]) + size.to_bytes(2, "big") + body


def proposal(
    body: bytes, *, last: int = 0, count: int = 1, spi: bytes = b"", length: int | None = None
) -> bytes:
    size = 8 + len(spi) + len(body) if length is None else length
    return bytes([last, 0]) + size.to_bytes(2, "big") + bytes([1, 1, len(spi), count]) + spi + body


def transform(
    ttype: int, tid: int, attrs: bytes = b"", *, last: int = 0, length: int | None = None
) -> bytes:
    size = 8 + len(attrs) if length is None else length
    return (
        bytes([last, 0])
        + size.to_bytes(2, "big")
        + bytes([ttype, 0])
        + tid.to_bytes(2, "big")
        + attrs
    )


def sa_message(*proposals: bytes) -> bytes:
    return message(SA, payload(0, b"".join(proposals)))


def raises(exc: type[ProtocolError], offset: int, words: str, data: bytes) -> ProtocolError:
    """Decode ``data`` and check the error type, its offset and a phrase of its sentence."""
    with pytest.raises(exc, match=rf"^at offset {offset}: .*{re.escape(words)}") as info:
        decode_message(data)
    assert info.value.offset == offset
    assert "\n" not in str(info.value)
    return info.value


# --- header and message length ------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 16, 27])
def test_truncated_header(size):
    raises(TruncatedMessage, 0, "needs 28 bytes", samples.sa_init_request()[:size])
    with pytest.raises(TruncatedMessage):
        decode_header(bytes(size))


def test_header_length_larger_than_the_datagram():
    data = message(0, b"", length=200)
    error = raises(InvalidSyntax, 24, "says the message is 200 bytes but 28", data)
    assert error.notify_type == NotifyType.INVALID_SYNTAX


def test_header_length_smaller_than_the_datagram():
    data = message(NONCE, payload(0, bytes(16)), length=28)
    raises(InvalidSyntax, 24, "is 28 bytes but 48", data)


@pytest.mark.parametrize("version", [0x10, 0x30, 0xF0, 0x00])
def test_wrong_major_version(version):
    data = bytearray(samples.sa_init_request())
    data[17] = version
    error = raises(
        InvalidMajorVersion, 17, f"major version {version >> 4} is not supported", bytes(data)
    )
    # RFC 7296 2.5: answered with INVALID_MAJOR_VERSION.
    assert error.notify_type == NotifyType.INVALID_MAJOR_VERSION
    with pytest.raises(InvalidMajorVersion):
        decode_header(bytes(data))


# --- the payload chain --------------------------------------------------------------------


def test_header_announces_a_payload_but_the_message_ends():
    raises(
        TruncatedMessage, BODY, "chain runs off the end: the next is a SA payload", message(SA, b"")
    )


def test_last_payload_announces_another_that_is_not_there():
    data = message(NONCE, payload(NOTIFY, bytes(16)))
    raises(TruncatedMessage, BODY + 20, "the next is a NOTIFY payload but only 0", data)


def test_truncated_generic_header():
    data = message(NONCE, payload(NOTIFY, bytes(16)) + b"\x00\x00")
    raises(TruncatedMessage, BODY + 20, "only 2 bytes remain", data)


@pytest.mark.parametrize("length", [0, 1, 3])
def test_payload_length_below_the_generic_header_does_not_loop(length):
    # A zero length must not make the decoder stand still on the same payload forever.
    data = message(NOTIFY, payload(NOTIFY, b"", length=length) * 50)
    raises(InvalidSyntax, BODY, f"length {length} is less than its 4-byte header", data)


def test_minimal_payloads_pointing_at_each_other_end_when_the_bytes_do():
    data = message(43, payload(43, b"") * 10)  # ten empty Vendor IDs, each announcing another
    raises(TruncatedMessage, BODY + 40, "chain runs off the end", data)


def test_payload_length_beyond_the_message():
    data = message(NONCE, payload(0, bytes(16), length=100))
    raises(TruncatedMessage, BODY, "length 100 runs past the end of the data, which has 20", data)


def test_payload_length_shorter_than_its_content_leaves_bytes_after_the_chain():
    data = message(NONCE, payload(0, bytes(20), length=20))
    raises(InvalidSyntax, BODY + 20, "4 bytes follow the last payload", data)


def test_bytes_after_the_last_payload():
    data = message(NONCE, payload(0, bytes(16)) + b"\xff")
    raises(InvalidSyntax, BODY + 20, "1 bytes follow the last payload", data)


def test_unknown_critical_payload_is_refused():
    data = message(NONCE, payload(150, bytes(16)) + payload(0, b"abc", flags=0x80))
    error = raises(
        UnsupportedCriticalPayload, BODY + 20, "unsupported critical payload type 150", data
    )
    # RFC 7296 3.10.1: the notify data is the one-byte payload type.
    assert error.notify_type == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert error.notify_data == bytes([150])
    assert error.payload_type == 150


def test_decode_payloads_reports_offsets_relative_to_the_message():
    with pytest.raises(InvalidSyntax, match=r"^at offset 124: nonce of 5 bytes") as info:
        decode_payloads(NONCE, payload(0, bytes(5)), offset=120)
    assert info.value.offset == 124
    with pytest.raises(TruncatedMessage, match=r"^at offset 140: "):
        decode_payloads(NONCE, payload(NOTIFY, bytes(16)), offset=120)


def test_decode_payloads_with_no_first_type_and_bytes_left():
    with pytest.raises(InvalidSyntax, match=r"^at offset 0: 3 bytes follow"):
        decode_payloads(0, b"abc")


# --- bodies of simple payloads ------------------------------------------------------------


@pytest.mark.parametrize(
    ("ptype", "body", "minimum"),
    [
        (KE, b"\x00\x1f", 8),
        (35, b"\x02\x00", 8),  # IDi
        (36, b"", 8),  # IDr
        (37, b"", 5),  # CERT
        (38, b"", 5),  # CERTREQ
        (39, b"\x02", 8),  # AUTH
        (NOTIFY, b"\x00\x00\x40", 8),
        (DELETE, b"\x03", 8),
        (TSI, b"\x01\x00", 8),
        (45, b"", 8),  # TSr
        (CP, b"\x01\x00\x00", 8),
        (EAP, b"\x02\x01\x00", 8),
        (SKF, b"\x00\x01\x00", 8),
    ],
)
def test_payload_shorter_than_its_fixed_fields(ptype, body, minimum):
    data = message(ptype, payload(0, body))
    raises(
        InvalidSyntax, BODY, f"length {4 + len(body)} is less than its minimum of {minimum}", data
    )


@pytest.mark.parametrize("size", [0, 15, 257, 400])
def test_nonce_length_outside_16_to_256(size):
    data = message(NONCE, payload(0, bytes(size)))
    raises(InvalidSyntax, BODY + 4, f"nonce of {size} bytes is outside the 16 to 256", data)


def test_notify_spi_size_beyond_the_payload():
    data = message(NOTIFY, payload(0, bytes([3, 8]) + (16393).to_bytes(2, "big") + b"\x01\x02"))
    raises(TruncatedMessage, BODY + 8, "Notify SPI needs 8 bytes but only 2 remain", data)


def test_delete_with_a_huge_spi_count():
    body = bytes([3, 4]) + (65535).to_bytes(2, "big") + bytes(8)
    raises(
        InvalidSyntax,
        BODY + 4,
        "announces 65535 SPIs of 4 bytes but carries 8",
        message(DELETE, payload(0, body)),
    )


def test_delete_count_disagrees_with_spi_bytes():
    body = bytes([3, 4]) + (2).to_bytes(2, "big") + bytes(9)
    raises(
        InvalidSyntax,
        BODY + 4,
        "announces 2 SPIs of 4 bytes but carries 9",
        message(DELETE, payload(0, body)),
    )


def test_delete_with_spis_of_size_zero():
    body = bytes([1, 0]) + (5).to_bytes(2, "big")
    raises(InvalidSyntax, BODY + 4, "announces 5 SPIs of size 0", message(DELETE, payload(0, body)))


def test_eap_message_shorter_than_its_header():
    raises(InvalidSyntax, BODY, "EAP payload length 6", message(EAP, payload(0, b"\x02\x01")))


def test_cp_attribute_length_beyond_the_payload():
    body = bytes([1, 0, 0, 0]) + (1).to_bytes(2, "big") + (4).to_bytes(2, "big") + b"\xc0"
    raises(
        TruncatedMessage,
        BODY + 12,
        "configuration attribute value needs 4 bytes but only 1",
        message(CP, payload(0, body)),
    )


def test_cp_attribute_header_cut_short():
    body = bytes([1, 0, 0, 0]) + b"\x00\x01\x00"
    raises(
        TruncatedMessage,
        BODY + 8,
        "configuration attribute header needs 4 bytes",
        message(CP, payload(0, body)),
    )


# --- SK and SKF ---------------------------------------------------------------------------


def test_bytes_after_an_sk_payload():
    sk = payload(35, bytes(24))
    data = message(SK, sk + payload(0, b"x"))
    raises(InvalidSyntax, BODY + 28, "5 bytes follow the SK payload, which must be the last", data)


def test_payload_after_an_skf_payload():
    skf = payload(0, bytes([0, 2, 0, 2]) + bytes(24))
    data = message(SKF, skf + encode_payloads([NotifyPayload(NotifyType.COOKIE, b"c")]))
    raises(InvalidSyntax, BODY + 32, "follow the SKF payload, which must be the last", data)


@pytest.mark.parametrize(("number", "total"), [(0, 3), (1, 0), (0, 0), (4, 3), (65535, 1)])
def test_invalid_fragment_numbers(number, total):
    # RFC 7383 2.5: Fragment Number starts at 1 and is at most Total Fragments.
    body = number.to_bytes(2, "big") + total.to_bytes(2, "big") + bytes(24)
    data = message(SKF, payload(KE, body))
    raises(InvalidSyntax, BODY + 4, f"fragment number {number} of {total} is not a valid", data)


# --- SA payload ---------------------------------------------------------------------------


def test_proposal_header_cut_short():
    raises(
        TruncatedMessage,
        BODY + 4,
        "header of proposal 1 needs 8 bytes but only 5",
        sa_message(bytes(5)),
    )


def test_proposal_length_below_its_header():
    data = sa_message(proposal(transform(1, 20), length=6))
    raises(InvalidSyntax, BODY + 4, "proposal 1 length 6 is less than its 8-byte header", data)


def test_proposal_length_beyond_the_sa_payload():
    data = sa_message(proposal(transform(1, 20), length=40))
    raises(
        TruncatedMessage,
        BODY + 4,
        "proposal 1 length 40 runs past the end of the SA payload, which has 16",
        data,
    )


def test_proposal_spi_size_beyond_the_proposal():
    body = bytes([0, 0, 0, 8, 1, 3, 4, 0]) + b"\x01\x02"
    data = message(SA, payload(0, body))
    raises(TruncatedMessage, BODY + 12, "SPI of proposal 1 needs 4 bytes but only 0", data)


def test_absurd_transform_count():
    data = sa_message(proposal(transform(1, 20), count=255))
    raises(
        InvalidSyntax, BODY + 4, "proposal 1 announces 255 transforms but only 8 bytes remain", data
    )


def test_fewer_transforms_announced_than_present():
    body = transform(1, 20, last=3) + transform(2, 7, last=3) + transform(4, 31)
    data = sa_message(proposal(body, count=2))
    raises(
        InvalidSyntax,
        BODY + 4 + 8 + 8,
        "transform 2 of 2 in proposal 1 has Last Substruc 3 instead of 0",
        data,
    )


def test_more_transforms_announced_than_fit_after_a_long_one():
    attrs = (0x800E).to_bytes(2, "big") + (256).to_bytes(2, "big")
    body = transform(1, 20, attrs * 3, last=3) + transform(2, 7, last=3)
    data = sa_message(proposal(body, count=3))
    raises(
        TruncatedMessage,
        BODY + 4 + 8 + 20 + 8,
        "header of transform 3 of proposal 1 needs 8 bytes",
        data,
    )


def test_bytes_left_after_the_announced_transforms():
    data = sa_message(proposal(transform(1, 20) + bytes(8), count=1))
    raises(
        InvalidSyntax,
        BODY + 4 + 16,
        "8 unexpected bytes follow the 1 transforms of proposal 1",
        data,
    )


def test_transform_length_below_its_header():
    data = sa_message(proposal(transform(1, 20, length=4)))
    raises(
        InvalidSyntax,
        BODY + 12,
        "transform 1 of proposal 1 has length 4, less than its 8-byte",
        data,
    )


def test_transform_length_beyond_the_proposal():
    data = sa_message(proposal(transform(1, 20, length=12)))
    raises(
        TruncatedMessage,
        BODY + 12,
        "transform 1 of proposal 1 has length 12, which runs past",
        data,
    )


def test_last_transform_marked_as_followed():
    data = sa_message(proposal(transform(1, 20, last=3)))
    raises(
        InvalidSyntax,
        BODY + 12,
        "transform 1 of 1 in proposal 1 has Last Substruc 3 instead of 0",
        data,
    )


def test_middle_transform_marked_as_last():
    data = sa_message(proposal(transform(1, 20) + transform(2, 7), count=2))
    raises(
        InvalidSyntax,
        BODY + 12,
        "transform 1 of 2 in proposal 1 has Last Substruc 0 instead of 3",
        data,
    )


def test_last_proposal_marked_as_followed():
    data = sa_message(proposal(transform(1, 20), last=2))
    raises(InvalidSyntax, BODY + 4, "proposal 1 announces another proposal but none follows", data)


def test_middle_proposal_marked_as_last():
    data = sa_message(proposal(transform(1, 20)), proposal(transform(1, 20)))
    raises(InvalidSyntax, BODY + 4, "proposal 1 is marked last but 16 bytes follow it", data)


@pytest.mark.parametrize("last", [1, 3, 255])
def test_proposal_last_substruc_neither_0_nor_2(last):
    data = sa_message(proposal(transform(1, 20), last=last))
    raises(
        InvalidSyntax,
        BODY + 4,
        f"proposal 1 has Last Substruc {last}, which is neither 0 nor 2",
        data,
    )


def test_tlv_attribute_length_beyond_the_transform():
    attr = (200).to_bytes(2, "big") + (300).to_bytes(2, "big") + b"\x01\x02"
    data = sa_message(proposal(transform(1, 20, attr)))
    raises(
        TruncatedMessage, BODY + 24, "transform attribute value needs 300 bytes but only 2", data
    )


def test_attribute_cut_short():
    data = sa_message(proposal(transform(1, 20, b"\x80\x0e")))
    raises(TruncatedMessage, BODY + 20, "transform attribute header needs 4 bytes but only 2", data)


# --- traffic selectors --------------------------------------------------------------------

V4_SELECTOR = (
    bytes([7, 0])
    + (16).to_bytes(2, "big")
    + bytes([0, 0, 255, 255])
    + bytes([192, 0, 2, 0, 192, 0, 2, 255])
)


def ts_message(count: int, selectors: bytes) -> bytes:
    return message(TSI, payload(0, bytes([count, 0, 0, 0]) + selectors))


def test_absurd_traffic_selector_count():
    raises(
        InvalidSyntax,
        BODY + 4,
        "TSi payload announces 255 traffic selectors but only 16",
        ts_message(255, V4_SELECTOR),
    )


def test_selector_length_disagrees_with_its_type():
    bad = bytes([7, 0]) + (40).to_bytes(2, "big") + bytes(36)
    raises(
        InvalidSyntax,
        BODY + 8,
        "traffic selector 1 of type 7 has length 40 instead of 16",
        ts_message(1, bad),
    )


def test_unknown_selector_type_cannot_be_kept():
    fc = bytes([9, 0]) + (16).to_bytes(2, "big") + bytes(12)  # TS_FC_ADDR_RANGE (RFC 4595)
    raises(
        InvalidSyntax,
        BODY + 8 + 16,
        "traffic selector type 9 cannot be kept",
        ts_message(2, V4_SELECTOR + fc),
    )


def test_selector_addresses_cut_short():
    v6 = bytes([8, 0]) + (40).to_bytes(2, "big") + bytes(4) + bytes(20)
    raises(
        TruncatedMessage,
        BODY + 16,
        "addresses of traffic selector 1 needs 32 bytes but only 20",
        ts_message(1, v6),
    )


def test_bytes_after_the_announced_selectors():
    raises(
        InvalidSyntax,
        BODY + 8 + 16,
        "16 unexpected bytes follow the 1 traffic selectors",
        ts_message(1, V4_SELECTOR * 2),
    )


def test_a_valid_message_after_all_these_still_decodes():
    # Guard against a test helper that is itself broken: the same builders make valid input.
    data = sa_message(proposal(transform(1, 20, last=3) + transform(2, 7), count=2))
    assert decode_message(data).payloads[0].proposals[0].transforms[1].id == 7
    data = message(NONCE, payload(TSI, bytes(16)) + payload(0, bytes([1, 0, 0, 0]) + V4_SELECTOR))
    assert decode_message(data).payloads[0] == NoncePayload(bytes(16))
    assert str(decode_message(data).payloads[1].selectors[0]) == "192.0.2.0-192.0.2.255"
    assert PayloadType(TSI) == PayloadType.TSi
