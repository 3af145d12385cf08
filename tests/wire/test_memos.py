"""The decoder's and the proposal module's memos give the answers a cold run gives."""

from __future__ import annotations

import pytest

from pqike.constants import ProtocolId
from pqike.errors import ProtocolError
from pqike.proposal import NegotiatedSuite, parse_proposals, select_proposal
from pqike.wire import codec
from pqike.wire.codec import decode_payloads, encode_payloads
from pqike.wire.payloads import Proposal, SaPayload

ESP = parse_proposals("aes256gcm16-aes128gcm16,chacha20poly1305", protocol=ProtocolId.ESP)


def _esp_sa(spi: bytes) -> bytes:
    sa = SaPayload(tuple(Proposal(p.number, p.protocol_id, p.transforms, spi) for p in ESP))
    return encode_payloads([sa])


def _cold() -> None:
    codec._SA_MEMO.clear()
    codec._TRANSFORMS_DECODED.clear()


def test_child_sa_offers_with_fresh_spis_share_their_transforms_and_keep_their_spi():
    _cold()
    first = decode_payloads(33, _esp_sa(b"\x01\x02\x03\x04"))[0]
    second = decode_payloads(33, _esp_sa(b"\x05\x06\x07\x08"))[0]
    assert isinstance(first, SaPayload) and isinstance(second, SaPayload)
    assert [p.spi for p in second.proposals] == [b"\x05\x06\x07\x08"] * len(ESP)
    for a, b, configured in zip(first.proposals, second.proposals, ESP, strict=True):
        assert a.transforms is b.transforms  # one tuple per encoding: identity memos hit
        assert b.transforms == configured.transforms
    _cold()
    assert decode_payloads(33, _esp_sa(b"\x05\x06\x07\x08")) == (second,)


@pytest.mark.parametrize(
    "index, value",
    [(4, 0x00), (4, 0x07), (7, 0x08), (7, 0xFF), (10, 0xC8), (10, 0x00), (11, 0x09)],
    ids=["last-but-more", "bad-last", "short", "long", "spi-past", "no-spi", "count"],
)
def test_a_damaged_offer_with_known_transforms_fails_as_it_does_cold(index, value):
    # Offsets in the SA payload: 4 Last Substruc, 6-7 Proposal Length, 10 SPI Size,
    # 11 #Transforms (RFC 7296 3.3.1).
    body = bytearray(_esp_sa(b"\x01\x02\x03\x04"))
    body[index] = value
    damaged = bytes(body)

    def error() -> tuple[type, str] | None:
        try:
            decode_payloads(33, damaged)
        except ProtocolError as exc:
            return type(exc), str(exc)
        return None

    _cold()
    cold = error()
    assert cold is not None
    decode_payloads(33, _esp_sa(b"\x09\x09\x09\x09"))  # warm the transform memo
    assert error() == cold


def test_selection_with_fresh_spis_answers_each_offer_with_its_own_spi():
    configured = parse_proposals("aes256gcm16", protocol=ProtocolId.ESP)
    for spi in (b"\x00\x00\x00\x01", b"\x00\x00\x00\x02"):
        offered = tuple(Proposal(p.number, p.protocol_id, p.transforms, spi) for p in ESP)
        chosen = select_proposal(offered, configured)
        assert chosen.spi == spi and chosen.number == 1
        assert NegotiatedSuite.from_proposal(chosen).key_bits == 256
