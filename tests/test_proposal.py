"""Proposals in strongSwan syntax, responder selection (RFC 7296 2.7, RFC 9370 2.2.2) and
the initiator's check of the responder's choice."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pqike.constants import (
    EncrTransform,
    EsnTransform,
    IntegTransform,
    KeyExchangeMethod,
    NotifyType,
    PrfTransform,
    ProtocolId,
    TransformAttributeType,
    TransformType,
)
from pqike.errors import ConfigurationError, NoProposalChosen, ProtocolError
from pqike.proposal import (
    NegotiatedSuite,
    check_selected,
    format_proposal,
    format_proposals,
    parse_proposals,
    select_proposal,
    without_key_exchanges,
)
from pqike.wire.payloads import Proposal, Transform, TransformAttribute

# Short names keep the expected transform lists readable.
Encr, Esn, Integ, Prf = EncrTransform, EsnTransform, IntegTransform, PrfTransform
Ke, TT = KeyExchangeMethod, TransformType
ESP = ProtocolId.ESP
NO_ADDKE = (0, 0, 0, 0, 0, 0, 0)


def one(text: str, protocol: int = ProtocolId.IKE) -> Proposal:
    (proposal,) = parse_proposals(text, protocol=protocol)
    return proposal


def summary(proposal: Proposal) -> list[tuple[int, int, int | None]]:
    """(type, ID, key length) of each transform, in wire order."""
    return [(t.type, t.id, t.key_length) for t in proposal.transforms]


def with_transforms(proposal: Proposal, *transforms: Transform) -> Proposal:
    return Proposal(proposal.number, proposal.protocol_id, transforms, proposal.spi)


# --- parsing: the project's acceptance proposals ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "aes256gcm16-prfsha384-x25519",
            [
                (TT.ENCR, Encr.AES_GCM_16, 256),
                (TT.PRF, Prf.HMAC_SHA2_384, None),
                (TT.KE, Ke.CURVE25519, None),
            ],
        ),
        (
            "aes128gcm16-prfsha256-ecp256",
            [
                (TT.ENCR, Encr.AES_GCM_16, 128),
                (TT.PRF, Prf.HMAC_SHA2_256, None),
                (TT.KE, Ke.ECP256, None),
            ],
        ),
        (
            "aes256gcm16-prfsha256-modp3072",
            [
                (TT.ENCR, Encr.AES_GCM_16, 256),
                (TT.PRF, Prf.HMAC_SHA2_256, None),
                (TT.KE, Ke.MODP3072, None),
            ],
        ),
        (
            "aes256gcm16-prfsha512-x448",
            [
                (TT.ENCR, Encr.AES_GCM_16, 256),
                (TT.PRF, Prf.HMAC_SHA2_512, None),
                (TT.KE, Ke.CURVE448, None),
            ],
        ),
        (
            "chacha20poly1305-prfsha256-x25519",
            [
                (TT.ENCR, Encr.CHACHA20_POLY1305, None),
                (TT.PRF, Prf.HMAC_SHA2_256, None),
                (TT.KE, Ke.CURVE25519, None),
            ],
        ),
        (
            "aes256gcm16-prfsha384-mlkem768",
            [
                (TT.ENCR, Encr.AES_GCM_16, 256),
                (TT.PRF, Prf.HMAC_SHA2_384, None),
                (TT.KE, Ke.ML_KEM_768, None),
            ],
        ),
    ],
)
def test_single_key_exchange_ike_proposals(text, expected):
    proposal = one(text)
    assert proposal.number == 1
    assert proposal.protocol_id == ProtocolId.IKE
    assert proposal.spi == b""
    assert summary(proposal) == expected


def test_prf_follows_the_integrity_algorithm_when_none_is_written():
    assert summary(one("aes256-sha256-ecp384")) == [
        (TT.ENCR, Encr.AES_CBC, 256),
        (TT.INTEG, Integ.HMAC_SHA2_256_128, None),
        (TT.PRF, Prf.HMAC_SHA2_256, None),
        (TT.KE, Ke.ECP384, None),
    ]


def test_aes_key_length_is_a_tv_attribute_and_chacha_has_none():
    (aes,) = one("aes256gcm16-prfsha384-x25519").transforms[:1]
    assert aes.attributes == (TransformAttribute(TransformAttributeType.KEY_LENGTH, 256),)
    (chacha,) = one("chacha20poly1305-prfsha256-x25519").transforms[:1]
    assert chacha.attributes == ()


def test_hybrid_proposal_puts_ml_kem_in_the_first_additional_key_exchange():
    assert summary(one("aes256gcm16-prfsha384-x25519-ke1_mlkem768"))[2:] == [
        (TT.KE, Ke.CURVE25519, None),
        (TT.ADDKE1, Ke.ML_KEM_768, None),
    ]


def test_two_additional_key_exchanges():
    assert summary(one("aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"))[3:] == [
        (TT.ADDKE1, Ke.ML_KEM_768, None),
        (TT.ADDKE2, Ke.ML_KEM_1024, None),
    ]


def test_additional_key_exchanges_may_leave_a_gap():
    proposal = one("aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke3_mlkem1024")
    assert summary(proposal)[3:] == [
        (TT.ADDKE1, Ke.ML_KEM_768, None),
        (TT.ADDKE3, Ke.ML_KEM_1024, None),
    ]
    assert TT.ADDKE2 not in {t.type for t in proposal.transforms}


def test_ke_none_makes_an_additional_key_exchange_optional():
    assert summary(one("aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none"))[3:] == [
        (TT.ADDKE1, Ke.ML_KEM_768, None),
        (TT.ADDKE1, Ke.NONE, None),
    ]


def test_esp_aead_proposal_gets_no_esn_by_default_and_an_empty_spi():
    proposal = one("aes256gcm16", ESP)
    assert proposal.protocol_id == ESP
    assert proposal.spi == b""
    assert summary(proposal) == [(TT.ENCR, Encr.AES_GCM_16, 256), (TT.ESN, Esn.NO_ESN, None)]


def test_esp_cbc_proposal_with_esn():
    assert summary(one("aes128-sha256-esn", ESP)) == [
        (TT.ENCR, Encr.AES_CBC, 128),
        (TT.INTEG, Integ.HMAC_SHA2_256_128, None),
        (TT.ESN, Esn.ESN, None),
    ]


def test_esp_keeps_key_exchanges_for_rekeying():
    assert summary(one("aes256gcm16-x25519-ke1_mlkem768", ESP)) == [
        (TT.ENCR, Encr.AES_GCM_16, 256),
        (TT.KE, Ke.CURVE25519, None),
        (TT.ESN, Esn.NO_ESN, None),
        (TT.ADDKE1, Ke.ML_KEM_768, None),
    ]


def test_several_proposals_are_numbered_from_one():
    proposals = parse_proposals(
        "aes256gcm16-prfsha384-x25519-ke1_mlkem768, aes256gcm16-prfsha384-x25519"
    )
    assert [p.number for p in proposals] == [1, 2]
    assert [format_proposal(p) for p in proposals] == [
        "aes256gcm16-prfsha384-x25519-ke1_mlkem768",
        "aes256gcm16-prfsha384-x25519",
    ]


def test_alternatives_keep_the_order_written_and_transforms_follow_type_order():
    proposal = one("ke1_mlkem768-x25519-ecp256-prfsha384-aes128gcm16-aes256gcm16")
    assert summary(proposal) == [
        (TT.ENCR, Encr.AES_GCM_16, 128),
        (TT.ENCR, Encr.AES_GCM_16, 256),
        (TT.PRF, Prf.HMAC_SHA2_384, None),
        (TT.KE, Ke.CURVE25519, None),
        (TT.KE, Ke.ECP256, None),
        (TT.ADDKE1, Ke.ML_KEM_768, None),
    ]


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("aes256gcm-prfsha384-curve25519", "aes256gcm16-prfsha384-x25519"),
        ("aes128gcm128-prfsha256-curve448", "aes128gcm16-prfsha256-x448"),
        ("AES256GCM16-PRFSHA384-X25519-KE1_MLKEM768", "aes256gcm16-prfsha384-x25519-ke1_mlkem768"),
        (" aes256gcm16 - prfsha384 - x25519 ", "aes256gcm16-prfsha384-x25519"),
        ("aes256gcm96-prfsha256-ecp521", "aes256gcm12-prfsha256-ecp521"),
        ("aes128gcm64-prfsha256-modp2048", "aes128gcm8-prfsha256-modp2048"),
        ("aes-sha-modp2048", "aes128-sha1-prfsha1-modp2048"),
        ("aes192-sha2_512-modp4096", "aes192-sha512-prfsha512-modp4096"),
        (
            "aes256gcm16-prfsha256-x25519-ke1_modpnone-ke1_mlkem512",
            "aes256gcm16-prfsha256-x25519-ke1_none-ke1_mlkem512",
        ),
    ],
)
def test_aliases_and_case_format_canonically(alias, canonical):
    assert format_proposal(one(alias)) == canonical


def test_every_key_exchange_keyword_works_in_every_round():
    for keyword, method in [("ecp256bp", Ke.BRAINPOOLP256), ("mlkem1024", Ke.ML_KEM_1024)]:
        proposal = one(f"aes256gcm16-prfsha256-{keyword}-ke7_{keyword}")
        assert summary(proposal)[2:] == [(TT.KE, method, None), (TT.ADDKE7, method, None)]


ACCEPTANCE = [
    "aes256gcm16-prfsha384-x25519",
    "aes128gcm16-prfsha256-ecp256",
    "aes256gcm16-prfsha256-modp3072",
    "aes256gcm16-prfsha512-x448",
    "chacha20poly1305-prfsha256-x25519",
    "aes256gcm16-prfsha384-mlkem768",
    "aes256gcm16-prfsha384-x25519-ke1_mlkem768",
    "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024",
    "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke3_mlkem1024",
    "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none",
]


@pytest.mark.parametrize("text", ACCEPTANCE)
def test_canonical_proposals_format_back_to_themselves(text):
    assert format_proposal(one(text)) == text


def test_derived_prf_is_written_out_when_formatting():
    text = format_proposal(one("aes256-sha256-ecp384"))
    assert text == "aes256-sha256-prfsha256-ecp384"
    assert one(text) == one("aes256-sha256-ecp384")


def test_parse_format_parse_round_trip_for_a_list():
    text = ",".join(ACCEPTANCE)
    proposals = parse_proposals(text)
    assert format_proposals(proposals) == text
    assert parse_proposals(format_proposals(proposals)) == proposals
    esp = parse_proposals("aes256gcm16-x25519-ke1_mlkem768,aes128-sha256-esn-noesn", protocol=ESP)
    assert parse_proposals(format_proposals(esp), protocol=ESP) == esp


def test_transforms_without_a_keyword_format_as_registry_names():
    proposal = Proposal(
        1,
        ProtocolId.IKE,
        (
            Transform(TT.ENCR, Encr.AES_CTR, (TransformAttribute(14, 256),)),
            Transform(TT.PRF, 999),
            Transform(TT.KE, 1234),
            Transform(TT.ADDKE2, Ke.GOST3410_2012_256),
            Transform(13, 7),
        ),
    )
    assert format_proposal(proposal) == (
        "AES_CTR_256-PrfTransform(999)-KeyExchangeMethod(1234)-ke2_GOST3410_2012_256-"
        "TransformType(13)_7"
    )


@st.composite
def proposal_texts(draw) -> str:
    """Valid IKE proposals in canonical form: AEAD or CBC+integrity, KE, ADDKE rounds."""
    ke_words = st.sampled_from(
        ["x25519", "x448", "ecp256", "ecp384", "modp3072", "mlkem512", "mlkem768", "mlkem1024"]
    )
    if draw(st.booleans()):
        encr = draw(
            st.lists(
                st.sampled_from(["aes128gcm16", "aes256gcm16", "chacha20poly1305", "aes192gcm12"]),
                min_size=1,
                unique=True,
            )
        )
        integ: list[str] = []
    else:
        encr = draw(
            st.lists(st.sampled_from(["aes128", "aes192", "aes256"]), min_size=1, unique=True)
        )
        integ = draw(
            st.lists(st.sampled_from(["sha256", "sha384", "sha512"]), min_size=1, unique=True)
        )
    prf = draw(
        st.lists(st.sampled_from(["prfsha256", "prfsha384", "prfsha512"]), min_size=1, unique=True)
    )
    ke = draw(st.lists(ke_words, min_size=1, unique=True))
    addke: list[str] = []
    for n in draw(st.lists(st.integers(1, 7), unique=True, max_size=3).map(sorted)):
        methods = draw(st.lists(ke_words | st.just("none"), min_size=1, unique=True))
        addke += [f"ke{n}_{m}" for m in methods]
    return "-".join(encr + integ + prf + ke + addke)


@given(proposal_texts())
def test_canonical_text_survives_parse_and_format(text):
    assert format_proposal(one(text)) == text


# --- parsing: errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "protocol", "message"),
    [
        (
            "aes999-sha256-x25519",
            ProtocolId.IKE,
            "unknown algorithm 'aes999' in proposal 'aes999-sha256-x25519'",
        ),
        (
            "prfsha256-x25519",
            ProtocolId.IKE,
            "no encryption algorithm in proposal 'prfsha256-x25519'",
        ),
        (
            "aes256gcm16-sha256-x25519",
            ProtocolId.IKE,
            "integrity algorithm 'sha256' cannot be combined with AEAD algorithm 'aes256gcm16'",
        ),
        (
            "aes256gcm16-aes256-sha256-x25519",
            ProtocolId.IKE,
            "AEAD algorithm 'aes256gcm16' and non-AEAD algorithm 'aes256' cannot share",
        ),
        (
            "aes256gcm16-x25519",
            ProtocolId.IKE,
            "no PRF in proposal 'aes256gcm16-x25519' and no integrity algorithm to derive it",
        ),
        (
            "aes256-prfsha256-x25519",
            ProtocolId.IKE,
            "no integrity algorithm for non-AEAD algorithm 'aes256'",
        ),
        (
            "aes256gcm16-prfsha256",
            ProtocolId.IKE,
            "no key exchange method in IKE proposal 'aes256gcm16-prfsha256'",
        ),
        (
            "aes256gcm16-prfsha256-none",
            ProtocolId.IKE,
            "key exchange 'none' in IKE proposal 'aes256gcm16-prfsha256-none'",
        ),
        (
            "aes256gcm16-prfsha256-x25519-ke8_mlkem768",
            ProtocolId.IKE,
            "additional key exchange 'ke8_mlkem768' in proposal",
        ),
        (
            "aes256gcm16-prfsha256-x25519-ke0_mlkem768",
            ProtocolId.IKE,
            "additional key exchange 'ke0_mlkem768' in proposal",
        ),
        (
            "aes256gcm16-prfsha256-x25519-ke1_aes256",
            ProtocolId.IKE,
            "unknown key exchange method 'ke1_aes256' in proposal",
        ),
        (
            "aes256gcm16-prfsha256-x25519-ke1_",
            ProtocolId.IKE,
            "unknown key exchange method 'ke1_' in proposal",
        ),
        (
            "aes256gcm16--prfsha256-x25519",
            ProtocolId.IKE,
            "empty algorithm in proposal 'aes256gcm16--prfsha256-x25519'",
        ),
        ("aes256gcm16-prfsha256-x25519-", ProtocolId.IKE, "empty algorithm in proposal"),
        (
            "aes256gcm16-prfsha256-x25519-X25519",
            ProtocolId.IKE,
            "duplicate algorithm 'X25519' in proposal",
        ),
        (
            "aes256gcm16-prfsha256-x25519-curve25519",
            ProtocolId.IKE,
            "duplicate algorithm 'curve25519' in proposal",
        ),
        (
            "aes256gcm16-prfsha256-x25519-esn",
            ProtocolId.IKE,
            "sequence number option 'esn' in proposal",
        ),
        ("aes256gcm16-prfsha256", ESP, "PRF 'prfsha256' in proposal 'aes256gcm16-prfsha256'"),
        ("aes256", ESP, "no integrity algorithm for non-AEAD algorithm 'aes256'"),
        ("aes256gcm16-sha256", ESP, "integrity algorithm 'sha256' cannot be combined"),
        ("x25519", ESP, "no encryption algorithm in proposal 'x25519'"),
    ],
)
def test_bad_proposals_name_the_token_and_the_proposal(text, protocol, message):
    with pytest.raises(ConfigurationError) as raised:
        parse_proposals(text, protocol=protocol)
    assert message in str(raised.value)
    assert raised.value.field == "proposal"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "aes256gcm16-prfsha256-x25519,,aes256-sha256-ecp256",
        "aes256gcm16-prfsha256-x25519,",
    ],
)
def test_empty_proposal_is_refused(text):
    with pytest.raises(ConfigurationError, match="empty proposal") as raised:
        parse_proposals(text)
    assert raised.value.field == "proposal"


def test_error_in_a_later_proposal_names_that_proposal():
    with pytest.raises(ConfigurationError, match="'mlkem9999' in proposal 'aes256-sha256-m"):
        parse_proposals("aes256gcm16-prfsha256-x25519,aes256-sha256-mlkem9999")


def test_only_ike_and_esp_proposals_are_parsed():
    with pytest.raises(ConfigurationError, match="protocol AH"):
        parse_proposals("sha256", protocol=ProtocolId.AH)


# --- responder selection ---------------------------------------------------------------------


def test_our_first_configured_proposal_wins_over_the_peers_order():
    offered = parse_proposals("aes128gcm16-prfsha256-ecp256,aes256gcm16-prfsha384-x25519")
    configured = parse_proposals("aes256gcm16-prfsha384-x25519,aes128gcm16-prfsha256-ecp256")
    selected = select_proposal(offered, configured)
    assert selected.number == 2
    assert format_proposal(selected) == "aes256gcm16-prfsha384-x25519"


def test_within_a_proposal_our_order_of_alternatives_wins():
    offered = parse_proposals("aes128gcm16-aes256gcm16-prfsha256-prfsha384-ecp256-x25519")
    configured = parse_proposals("aes256gcm16-aes128gcm16-prfsha384-prfsha256-x25519-ecp256")
    assert format_proposal(select_proposal(offered, configured)) == ("aes256gcm16-prfsha384-x25519")


def test_selection_picks_exactly_one_transform_per_type():
    offered = parse_proposals("aes256-aes128-sha256-sha384-modp3072-ecp256")
    configured = parse_proposals("aes128-aes256-sha384-sha256-ecp256-modp3072")
    selected = select_proposal(offered, configured)
    assert summary(selected) == [
        (TT.ENCR, Encr.AES_CBC, 128),
        (TT.INTEG, Integ.HMAC_SHA2_384_192, None),
        (TT.PRF, Prf.HMAC_SHA2_384, None),
        (TT.KE, Ke.ECP256, None),
    ]


def test_the_method_of_the_initiators_ke_payload_is_preferred_if_acceptable():
    offered = parse_proposals("aes256gcm16-prfsha384-x25519-ecp256-ecp384")
    configured = parse_proposals("aes256gcm16-prfsha384-x25519-ecp256")
    ke = lambda **kw: select_proposal(offered, configured, **kw).transforms[2].id  # noqa: E731
    assert ke() == Ke.CURVE25519
    assert ke(prefer_ke=Ke.ECP256) == Ke.ECP256
    # Not acceptable to us: the first common method, and the core answers INVALID_KE_PAYLOAD.
    assert ke(prefer_ke=Ke.ECP384) == Ke.CURVE25519


def test_answer_carries_the_offered_number_protocol_and_spi():
    (ours,) = parse_proposals("aes256gcm16", protocol=ESP)
    offered = [
        Proposal(1, ESP, one("aes128gcm16", ESP).transforms, spi=b"\xc0\x00\x00\x01"),
        Proposal(2, ESP, one("aes256gcm16", ESP).transforms, spi=b"\xc0\x00\x00\x02"),
    ]
    selected = select_proposal(offered, [ours])
    assert (selected.number, selected.protocol_id, selected.spi) == (2, ESP, b"\xc0\x00\x00\x02")


def test_key_lengths_must_be_equal():
    with pytest.raises(NoProposalChosen, match="no acceptable ENCR") as raised:
        select_proposal(
            parse_proposals("aes128gcm16-prfsha384-x25519"),
            parse_proposals("aes256gcm16-prfsha384-x25519"),
        )
    assert raised.value.notify_type == NotifyType.NO_PROPOSAL_CHOSEN


def test_no_common_key_exchange_is_no_proposal_chosen():
    with pytest.raises(NoProposalChosen, match="no acceptable KE"):
        select_proposal(
            parse_proposals("aes256gcm16-prfsha384-ecp256"),
            parse_proposals("aes256gcm16-prfsha384-x25519"),
        )


def test_proposals_of_another_protocol_are_not_considered():
    with pytest.raises(NoProposalChosen, match="offered no proposal for IKE"):
        select_proposal(
            parse_proposals("aes256gcm16-x25519", protocol=ESP),
            parse_proposals("aes256gcm16-prfsha384-x25519"),
        )


def test_nothing_offered_is_no_proposal_chosen():
    with pytest.raises(NoProposalChosen, match="offered no proposals"):
        select_proposal([], parse_proposals("aes256gcm16-prfsha384-x25519"))


def test_a_transform_type_we_do_not_use_makes_that_proposal_unacceptable():
    # RFC 7296 3.3.6: a proposal with a transform type we do not understand is refused;
    # the peer's next proposal can still match.
    plain = one("aes256gcm16-prfsha384-x25519")
    strange = Proposal(1, ProtocolId.IKE, (*plain.transforms, Transform(13, 1)))
    with pytest.raises(NoProposalChosen, match="TransformType\\(13\\), which we do not use"):
        select_proposal([strange], [plain])
    fallback = Proposal(2, ProtocolId.IKE, plain.transforms)
    assert select_proposal([strange, fallback], [plain]).number == 2


def test_a_type_we_need_but_the_peer_omits_makes_that_proposal_unacceptable():
    configured = one("aes128-sha256-esn", ESP)
    offered = with_transforms(configured, *configured.transforms[:2])  # no ESN
    with pytest.raises(NoProposalChosen, match="lacks ESN"):
        select_proposal([offered], [configured])


def test_integrity_none_beside_an_aead_cipher_is_ignored():
    offered = one("aes256gcm16-prfsha384-x25519")
    offered = with_transforms(offered, *offered.transforms, Transform(TT.INTEG, Integ.NONE))
    selected = select_proposal([offered], parse_proposals("aes256gcm16-prfsha384-x25519"))
    assert format_proposal(selected) == "aes256gcm16-prfsha384-x25519"
    assert check_selected([offered], selected).integ == Integ.NONE


# --- responder selection: additional key exchanges (RFC 9370) -----------------------------


OPTIONAL_MLKEM = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none"


@pytest.mark.parametrize(
    "responder", ["aes256gcm16-prfsha384-x25519", "aes256gcm16-prfsha384-x25519-ke1_none"]
)
def test_classical_responder_answers_optional_ml_kem_with_none_and_omits_addke1(responder):
    offered = parse_proposals(OPTIONAL_MLKEM)
    selected = select_proposal(offered, parse_proposals(responder))
    assert format_proposal(selected) == "aes256gcm16-prfsha384-x25519"
    suite = check_selected(offered, selected)
    assert suite.addke == NO_ADDKE
    assert suite.rounds == ()


def test_responder_requiring_ml_kem_selects_it_from_an_optional_offer():
    offered = parse_proposals(OPTIONAL_MLKEM)
    selected = select_proposal(
        offered, parse_proposals("aes256gcm16-prfsha384-x25519-ke1_mlkem768")
    )
    assert summary(selected)[-1] == (TT.ADDKE1, Ke.ML_KEM_768, None)
    assert check_selected(offered, selected).rounds == ((1, Ke.ML_KEM_768),)


def test_responder_with_optional_ml_kem_prefers_it_to_none():
    offered = parse_proposals("aes256gcm16-prfsha384-x25519-ke1_none-ke1_mlkem768")
    selected = select_proposal(offered, parse_proposals(OPTIONAL_MLKEM))
    assert format_proposal(selected) == "aes256gcm16-prfsha384-x25519-ke1_mlkem768"


def test_responder_requiring_ml_kem_refuses_a_classical_offer():
    with pytest.raises(NoProposalChosen, match="no acceptable ADDKE1"):
        select_proposal(
            parse_proposals("aes256gcm16-prfsha384-x25519"),
            parse_proposals("aes256gcm16-prfsha384-x25519-ke1_mlkem768"),
        )


def test_responder_with_optional_ml_kem_accepts_a_classical_offer():
    selected = select_proposal(
        parse_proposals("aes256gcm16-prfsha384-x25519"), parse_proposals(OPTIONAL_MLKEM)
    )
    assert format_proposal(selected) == "aes256gcm16-prfsha384-x25519"


def test_rounds_with_a_gap():
    offered = parse_proposals("aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke3_mlkem1024")
    selected = select_proposal(offered, offered)
    assert check_selected(offered, selected).rounds == (
        (1, Ke.ML_KEM_768),
        (3, Ke.ML_KEM_1024),
    )


def test_the_same_method_is_never_selected_twice():
    offered = parse_proposals("aes256gcm16-prfsha384-x25519-ke1_x25519-ke1_mlkem768")
    selected = select_proposal(offered, offered)
    assert format_proposal(selected) == "aes256gcm16-prfsha384-x25519-ke1_mlkem768"


def test_selection_backtracks_over_the_main_key_exchange():
    # Preferring x25519 for KE leaves ADDKE1 nothing but x25519 again, so KE must move.
    offered = parse_proposals("aes256gcm16-prfsha384-x25519-mlkem768-ke1_x25519")
    selected = select_proposal(offered, offered, prefer_ke=Ke.CURVE25519)
    assert format_proposal(selected) == "aes256gcm16-prfsha384-mlkem768-ke1_x25519"


def test_no_combination_without_a_repeated_method_is_no_proposal_chosen():
    offered = parse_proposals("aes256gcm16-prfsha384-x25519-ke1_x25519-ke2_mlkem768")
    with pytest.raises(NoProposalChosen, match="method twice"):
        select_proposal(offered, offered)


def test_none_may_repeat_across_rounds():
    offered = parse_proposals("aes256gcm16-prfsha384-x25519-ke1_none-ke2_none")
    selected = select_proposal(offered, offered)
    assert format_proposal(selected) == "aes256gcm16-prfsha384-x25519"


def test_esp_without_pfs_matches_only_if_we_accept_no_key_exchange():
    no_pfs = parse_proposals("aes256gcm16", protocol=ESP)
    with pytest.raises(NoProposalChosen, match="no acceptable KE"):
        select_proposal(no_pfs, parse_proposals("aes256gcm16-x25519", protocol=ESP))
    selected = select_proposal(no_pfs, parse_proposals("aes256gcm16-x25519-none", protocol=ESP))
    assert format_proposal(selected) == "aes256gcm16-noesn"


def test_child_sa_in_ike_auth_ignores_key_exchanges_on_both_sides():
    offered = parse_proposals("aes256gcm16-x25519-ke1_mlkem768", protocol=ESP)
    configured = parse_proposals("aes256gcm16-ecp256", protocol=ESP)
    selected = select_proposal(
        [without_key_exchanges(p) for p in offered],
        [without_key_exchanges(p) for p in configured],
    )
    assert format_proposal(selected) == "aes256gcm16-noesn"


# --- the initiator's check of the answer -------------------------------------------------------


def test_check_selected_returns_the_negotiated_suite():
    offered = parse_proposals(
        "aes256gcm16-prfsha256-ecp256,aes256gcm16-prfsha384-x25519-ke1_mlkem768"
    )
    answer = one("aes256gcm16-prfsha384-x25519-ke1_mlkem768")
    answer = Proposal(2, ProtocolId.IKE, answer.transforms)
    suite = check_selected(offered, answer)
    assert suite == NegotiatedSuite(
        encr=Encr.AES_GCM_16,
        key_bits=256,
        prf=Prf.HMAC_SHA2_384,
        integ=Integ.NONE,
        ke=Ke.CURVE25519,
        addke=(Ke.ML_KEM_768, 0, 0, 0, 0, 0, 0),
        esn=None,
    )
    assert suite.describe() == "aes256gcm16-prfsha384-x25519-ke1_mlkem768"


def test_esp_suite_describes_itself():
    offered = parse_proposals("aes128-sha256-esn", protocol=ESP)
    suite = check_selected(offered, offered[0])
    assert (suite.encr, suite.key_bits, suite.integ, suite.prf, suite.ke, suite.esn) == (
        Encr.AES_CBC,
        128,
        Integ.HMAC_SHA2_256_128,
        None,
        None,
        Esn.ESN,
    )
    assert suite.describe() == "aes128-sha256-esn"


def test_dropping_a_required_round_is_a_downgrade():
    offered = parse_proposals("aes256gcm16-prfsha384-x25519-ke1_mlkem768")
    answer = one("aes256gcm16-prfsha384-x25519")
    with pytest.raises(NoProposalChosen, match="left out ADDKE1"):
        check_selected(offered, answer)


def test_a_responder_may_echo_none_explicitly():
    offered = parse_proposals(OPTIONAL_MLKEM)
    answer = with_transforms(
        one("aes256gcm16-prfsha384-x25519"),
        *one("aes256gcm16-prfsha384-x25519").transforms,
        Transform(TT.ADDKE1, Ke.NONE),
    )
    assert check_selected(offered, answer).addke == NO_ADDKE


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (Transform(TT.ADDKE2, Ke.ML_KEM_1024), "chose ADDKE2 ke2_mlkem1024, which proposal 1"),
        (Transform(13, 1), "chose TransformType\\(13\\)"),
        (Transform(TT.INTEG, Integ.HMAC_SHA2_256_128), "integrity algorithm with an AEAD"),
        (Transform(TT.ESN, Esn.NO_ESN), "chose ESN noesn"),
    ],
)
def test_a_transform_we_did_not_offer_is_refused(extra, message):
    offered = parse_proposals("aes256gcm16-prfsha384-x25519-ke1_mlkem768")
    offered = [
        with_transforms(
            offered[0], *offered[0].transforms, Transform(TT.INTEG, Integ.HMAC_SHA2_256_128)
        )
    ]
    answer = one("aes256gcm16-prfsha384-x25519-ke1_mlkem768")
    with pytest.raises(NoProposalChosen, match=message):
        check_selected(offered, with_transforms(answer, *answer.transforms, extra))


def test_an_encryption_algorithm_we_did_not_offer_is_refused():
    offered = parse_proposals("aes256gcm16-prfsha384-x25519")
    with pytest.raises(NoProposalChosen, match="chose ENCR aes128gcm16"):
        check_selected(offered, one("aes128gcm16-prfsha384-x25519"))


def test_two_transforms_of_one_type_are_refused():
    offered = parse_proposals("aes256gcm16-prfsha384-x25519-ecp256")
    with pytest.raises(NoProposalChosen, match="more than one KE"):
        check_selected(offered, offered[0])


def test_a_proposal_number_we_did_not_use_is_refused():
    offered = parse_proposals("aes256gcm16-prfsha384-x25519")
    answer = Proposal(2, ProtocolId.IKE, offered[0].transforms)
    with pytest.raises(NoProposalChosen, match="proposal 2 \\(IKE\\), which we did not offer"):
        check_selected(offered, answer)


def test_an_answer_missing_a_mandatory_type_is_refused():
    offered = parse_proposals("aes256gcm16-prfsha384-x25519")
    answer = with_transforms(offered[0], *offered[0].transforms[::2])  # ENCR and KE only
    with pytest.raises(NoProposalChosen, match="lacks PRF"):
        check_selected(offered, answer)


def test_an_answer_repeating_a_method_is_refused():
    offered = parse_proposals("aes256gcm16-prfsha384-x25519-ke1_x25519-ke1_mlkem768")
    answer = one("aes256gcm16-prfsha384-x25519-ke1_x25519")
    with pytest.raises(NoProposalChosen, match="same key exchange method twice"):
        check_selected(offered, answer)


def test_negotiated_suite_needs_one_transform_per_type():
    with pytest.raises(NoProposalChosen, match="more than one ENCR"):
        NegotiatedSuite.from_proposal(one("aes256gcm16-aes128gcm16-prfsha384-x25519"))
    with pytest.raises(NoProposalChosen, match="no ENCR"):
        NegotiatedSuite.from_proposal(Proposal(1, ProtocolId.IKE, ()))


# --- properties: whatever the peer offers ---------------------------------------------------------


CONFIGURED = parse_proposals(
    "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none-ke2_mlkem1024-ke2_none,"
    "aes256-aes128-sha256-ecp256-x25519-mlkem768-ke1_x25519-ke1_mlkem768,"
    "chacha20poly1305-prfsha256-x448-ke3_mlkem512"
)

transforms = st.builds(
    Transform,
    type=st.sampled_from([*range(1, 13), 13, 241]),
    id=st.sampled_from([0, 1, 5, 6, 12, 13, 19, 20, 28, 31, 32, 35, 36, 37, 1024]),
    attributes=st.sampled_from(
        [
            (),
            (TransformAttribute(14, 128),),
            (TransformAttribute(14, 256),),
            (TransformAttribute(14, 256), TransformAttribute(99, b"x")),
        ]
    ),
)
# Mostly what we configure with a few transforms dropped, reordered or added, so that
# many offers match and the rest miss in interesting ways.
near_miss = st.sampled_from(CONFIGURED).flatmap(
    lambda p: st.tuples(
        st.permutations(p.transforms), st.integers(0, 2), st.lists(transforms, max_size=2)
    ).map(lambda drawn: [*drawn[0][drawn[1] :], *drawn[2]])
)
offers = st.lists(
    st.tuples(
        st.sampled_from([ProtocolId.IKE, ProtocolId.IKE, ProtocolId.IKE, ESP]),
        near_miss | st.lists(transforms, max_size=10),
    ),
    max_size=4,
).map(lambda items: [Proposal(n, proto, tuple(ts)) for n, (proto, ts) in enumerate(items, 1)])


@settings(max_examples=400)
@given(offers, st.sampled_from([None, 0, 19, 31, 36, 999]))
def test_any_offer_gets_a_choice_the_initiator_accepts_or_no_proposal_chosen(offered, prefer):
    try:
        selected = select_proposal(offered, CONFIGURED, prefer_ke=prefer)
    except NoProposalChosen:
        return
    types = [t.type for t in selected.transforms]
    assert len(types) == len(set(types))
    methods = [t.id for t in selected.transforms if t.type == TT.KE or 6 <= t.type <= 12]
    assert 0 not in methods
    assert len(methods) == len(set(methods))
    suite = check_selected(offered, selected)
    assert suite.ke is not None


@given(offers, st.lists(transforms, max_size=10), st.integers(1, 5))
def test_any_answer_is_accepted_or_refused_with_a_protocol_error(offered, answer, number):
    try:
        check_selected(offered, Proposal(number, ProtocolId.IKE, tuple(answer)))
    except ProtocolError as refused:
        assert refused.notify_type == NotifyType.NO_PROPOSAL_CHOSEN
