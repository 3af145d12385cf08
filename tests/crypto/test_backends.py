"""The pqcrypto and liboqs backends: interop with OpenSSL, sizes, bad values, IDs, handshakes.

pqcrypto has no seeded key generation, so its KEMs have no keygen known answers; what
is deterministic is checked instead: the FIPS 203 layout of ML-KEM decapsulation keys
and the implicit-rejection secret J(z || c). The liboqs tests need the liboqs C library;
where it is missing they are skipped with the backend's own reason.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem
from hypothesis import given, settings
from hypothesis import strategies as st

from pqike.constants import ADDKE_TYPES, NotifyType, TransformType
from pqike.constants import KeyExchangeMethod as M
from pqike.crypto.backends import (
    DEFAULT_PRIVATE_USE_IDS,
    PRIVATE_USE_KEMS,
    KemExchange,
    OqsBackend,
    PqcryptoBackend,
    build_registry,
    find_liboqs,
    kem_ids,
    mlkem_key_is_valid,
    private_use_ids,
    private_use_methods,
)
from pqike.crypto.backends.oqs_backend import OQS_MECHANISMS
from pqike.crypto.backends.pqcrypto_backend import PQCRYPTO_MODULES
from pqike.crypto.kex import DEFAULT_REGISTRY, MlKemExchange, create_key_exchange
from pqike.errors import ConfigurationError, InvalidSyntax, LocalProtocolError
from pqike.handshake import drive_pair, make_config, run_handshake
from pqike.ike.events import KeyExchangeCompleted
from pqike.ike.sa import IkeSa
from pqike.proposal import format_proposal, parse_proposals
from pqike.wire.payloads import Transform

IDS = kem_ids()
PQCRYPTO_KEMS = list(PQCRYPTO_MODULES)
OQS = OqsBackend()
needs_liboqs = pytest.mark.skipif(not OQS.available(), reason=str(OQS.unavailable_reason))

MLKEM_K = {"mlkem512": 2, "mlkem768": 3, "mlkem1024": 4}
KE_PAYLOAD_MAX = 65535 - 8  # 16-bit payload length minus the KE payload's own header


def info(keyword):
    return DEFAULT_REGISTRY.info(IDS[keyword])


def exchange(keyword, backend):
    return create_key_exchange(IDS[keyword], backend)


def run(initiator, responder):
    """One exchange: KEi from the initiator, (KEr, secret) from the responder."""
    kei = initiator.public_data()
    ker, responder_secret = responder.respond(kei)
    return kei, ker, responder_secret, initiator.complete(ker)


# --- ML-KEM between OpenSSL and pqcrypto ------------------------------------------------


@pytest.mark.parametrize("keyword", ["mlkem768", "mlkem1024"])
@pytest.mark.parametrize(
    ("initiator", "responder"), [("openssl", "pqcrypto"), ("pqcrypto", "openssl")]
)
def test_mlkem_interoperates_between_openssl_and_pqcrypto(keyword, initiator, responder):
    kei, ker, responder_secret, initiator_secret = run(
        exchange(keyword, initiator), exchange(keyword, responder)
    )
    assert initiator_secret == responder_secret
    assert (len(kei), len(ker), len(initiator_secret)) == (
        info(keyword).initiator_size,
        info(keyword).responder_size,
        32,
    )


def test_pqcrypto_encapsulates_to_a_seeded_openssl_key():
    # The initiator's key is fixed by a FIPS 203 seed (d || z); pqcrypto's ciphertext
    # must decapsulate under OpenSSL to pqcrypto's secret.
    seed = bytes(range(64))
    key = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
    initiator = MlKemExchange(M.ML_KEM_768, private_key=key)
    assert initiator.public_data() == key.public_key().public_bytes_raw()
    ct, secret = exchange("mlkem768", "pqcrypto").respond(initiator.public_data())
    assert initiator.complete(ct) == secret == key.decapsulate(ct)


@pytest.mark.parametrize("keyword", list(MLKEM_K))
def test_pqcrypto_mlkem_keys_have_the_fips203_layout_and_implicit_rejection(keyword):
    # pqcrypto has no seeded keygen; these are the known answers it still has. FIPS 203
    # 7.1: dk = dk_PKE || ek || H(ek) || z; Algorithm 18: a ciphertext that fails the
    # re-encryption check gives K = J(z || c) = SHAKE256(z || c, 32). Round-3 Kyber
    # differs on both, so this also tells that pqcrypto implements FIPS 203.
    from pqcrypto.kem import ml_kem_512, ml_kem_768, ml_kem_1024

    module = {"mlkem512": ml_kem_512, "mlkem768": ml_kem_768, "mlkem1024": ml_kem_1024}[keyword]
    k = MLKEM_K[keyword]
    ek, dk = module.keygen()
    assert dk[384 * k : 768 * k + 32] == ek
    assert dk[768 * k + 32 : 768 * k + 64] == hashlib.sha3_256(ek).digest()
    z = dk[-32:]
    bad_ciphertext = bytes(range(256)) * (module.CIPHERTEXT_SIZE // 256) + bytes(
        module.CIPHERTEXT_SIZE % 256
    )
    rejected = module.decaps(dk, bad_ciphertext)
    assert rejected == hashlib.shake_256(z + bad_ciphertext).digest(32)


# --- every pqcrypto KEM -----------------------------------------------------------------


@pytest.mark.parametrize("keyword", PQCRYPTO_KEMS)
def test_every_pqcrypto_kem_round_trips_with_the_sizes_of_its_method(keyword):
    initiator, responder = exchange(keyword, "pqcrypto"), exchange(keyword, "pqcrypto")
    kei, ker, responder_secret, initiator_secret = run(initiator, responder)
    method = info(keyword)
    assert initiator_secret == responder_secret
    assert (len(kei), len(ker), len(initiator_secret)) == (
        method.initiator_size,
        method.responder_size,
        method.secret_size,
    )
    assert initiator.method == responder.method == method.method
    assert isinstance(initiator, KemExchange) and initiator.backend == "pqcrypto"


@pytest.mark.parametrize("keyword", [k for k in PQCRYPTO_KEMS if "mceliece" not in k])
def test_pqcrypto_key_pairs_are_fresh_and_tampering_only_changes_the_secret(keyword):
    first, second = exchange(keyword, "pqcrypto"), exchange(keyword, "pqcrypto")
    assert first.public_data() != second.public_data()
    assert first.public_data() == first.public_data()  # generated once
    ct, secret = exchange(keyword, "pqcrypto").respond(first.public_data())
    tampered = bytes([ct[0] ^ 1]) + ct[1:]
    # Implicit rejection: no error, just a secret the responder does not have.
    assert first.complete(tampered) != secret
    assert first.complete(ct) == secret


def test_pqcrypto_roles_cannot_be_mixed():
    responder = exchange("hqc128", "pqcrypto")
    responder.respond(exchange("hqc128", "pqcrypto").public_data())
    with pytest.raises(LocalProtocolError):
        responder.public_data()
    with pytest.raises(LocalProtocolError):
        responder.respond(b"")
    with pytest.raises(LocalProtocolError):
        exchange("hqc128", "pqcrypto").complete(bytes(info("hqc128").responder_size))


# --- bad values -------------------------------------------------------------------------


@pytest.mark.parametrize("keyword", [k for k in PQCRYPTO_KEMS if "mceliece" not in k])
def test_wrong_lengths_are_invalid_syntax(keyword):
    method = info(keyword)
    for size in (0, method.initiator_size - 1, method.initiator_size + 1):
        with pytest.raises(InvalidSyntax, match="encapsulation key must be"):
            exchange(keyword, "pqcrypto").respond(bytes(size))
    initiator = exchange(keyword, "pqcrypto")
    initiator.public_data()
    for size in (0, method.responder_size - 1, method.responder_size + 1):
        with pytest.raises(InvalidSyntax, match="ciphertext must be"):
            initiator.complete(bytes(size))


def test_mceliece_wrong_lengths_are_invalid_syntax():
    method = info("mceliece348864")
    with pytest.raises(InvalidSyntax, match="261120 bytes"):
        exchange("mceliece348864", "pqcrypto").respond(bytes(method.initiator_size - 1))
    initiator = exchange("mceliece348864", "pqcrypto")
    initiator.public_data()
    with pytest.raises(InvalidSyntax, match="96 bytes"):
        initiator.complete(bytes(97))


def coefficients(ek: bytes, k: int) -> list[int]:
    """ByteDecode12 of ek[:384k], straight from FIPS 203 4.2.1."""
    out = []
    for at in range(0, 384 * k, 3):
        b0, b1, b2 = ek[at : at + 3]
        out += [b0 | ((b1 & 0x0F) << 8), (b1 >> 4) | (b2 << 4)]
    return out


def with_coefficient(ek: bytes, index: int, value: int) -> bytes:
    out = bytearray(ek)
    at = 3 * (index // 2)
    if index % 2 == 0:
        out[at] = value & 0xFF
        out[at + 1] = (out[at + 1] & 0xF0) | (value >> 8)
    else:
        out[at + 1] = (out[at + 1] & 0x0F) | ((value & 0x0F) << 4)
        out[at + 2] = value >> 4
    return bytes(out)


@pytest.mark.parametrize("keyword", list(MLKEM_K))
def test_pqcrypto_mlkem_responder_applies_the_fips203_modulus_check(keyword):
    k = MLKEM_K[keyword]
    ek = exchange(keyword, "pqcrypto").public_data()
    assert mlkem_key_is_valid(ek)
    for index in (0, 1, 255, 256 * k - 2, 256 * k - 1):
        edited = with_coefficient(ek, index, 3328)
        assert coefficients(edited, k)[index] == 3328
        ct, _ = exchange(keyword, "pqcrypto").respond(edited)
        assert len(ct) == info(keyword).responder_size
        for bad in (3329, 4095):
            edited = with_coefficient(ek, index, bad)
            assert coefficients(edited, k)[index] == bad
            with pytest.raises(InvalidSyntax, match="fails the modulus check") as refused:
                exchange(keyword, "pqcrypto").respond(edited)
            assert refused.value.notify_type == NotifyType.INVALID_SYNTAX
    # The 32-byte seed rho after the vector is not part of the check.
    assert mlkem_key_is_valid(ek[:-32] + b"\xff" * 32)


@settings(max_examples=200, deadline=None)
@given(
    k=st.sampled_from([2, 3, 4]),
    edits=st.lists(
        st.tuples(st.integers(0, 1023), st.sampled_from([0, 3328, 3329, 3330, 4095])),
        max_size=3,
    ),
    filler=st.integers(0, 3328),
)
def test_fast_modulus_check_agrees_with_decoding_every_coefficient(k, edits, filler):
    ek = b"".join((filler | (filler << 12)).to_bytes(3, "little") for _ in range(128 * k)) + bytes(
        32
    )
    for index, value in edits:
        ek = with_coefficient(ek, index % (256 * k), value)
    assert mlkem_key_is_valid(ek) == all(c < 3329 for c in coefficients(ek, k))


def test_modulus_check_refuses_other_lengths():
    assert not mlkem_key_is_valid(bytes(1183))
    assert not mlkem_key_is_valid(b"")


@pytest.mark.parametrize("keyword", [k for k in PQCRYPTO_KEMS if "mceliece" not in k])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_arbitrary_peer_data_raises_nothing_but_invalid_syntax(keyword, data):
    method = info(keyword)
    size = data.draw(st.sampled_from([method.initiator_size, method.responder_size, 0, 7]))
    # Bytes from a drawn seed: HQC's 9-14 KB are too big for hypothesis to draw directly.
    value = random.Random(data.draw(st.integers(0, 2**64))).randbytes(size)
    initiator = exchange(keyword, "pqcrypto")
    initiator.public_data()
    for step in (exchange(keyword, "pqcrypto").respond, initiator.complete):
        try:
            step(value)
        except InvalidSyntax:
            pass


# --- registry defaults, choice and lazy loading -------------------------------------------


def test_default_backends_keep_openssl_for_mlkem768_and_1024():
    assert DEFAULT_REGISTRY.supporting_backends(M.ML_KEM_768)[:2] == ["openssl", "pqcrypto"]
    assert isinstance(create_key_exchange(M.ML_KEM_768), MlKemExchange)
    assert isinstance(create_key_exchange(M.ML_KEM_1024), MlKemExchange)
    chosen = create_key_exchange(M.ML_KEM_768, "pqcrypto")
    assert isinstance(chosen, KemExchange) and chosen.backend == "pqcrypto"


@pytest.mark.parametrize("keyword", ["mlkem512", "hqc128", "sntrup761", "mceliece348864"])
def test_other_kems_default_to_the_first_available_backend(keyword):
    first = DEFAULT_REGISTRY.backends_for(IDS[keyword])[0]
    assert first == "pqcrypto"  # registered before liboqs
    assert create_key_exchange(IDS[keyword]).backend == "pqcrypto"
    assert "openssl" not in DEFAULT_REGISTRY.supporting_backends(IDS[keyword])


def test_frodokem_and_bike_come_from_liboqs_only():
    for keyword in ("frodoa1", "frodos5", "bike1", "bike5"):
        assert DEFAULT_REGISTRY.supporting_backends(IDS[keyword]) == ["liboqs"]
        expected = OQS.available() and OQS.supports(IDS[keyword])
        assert DEFAULT_REGISTRY.is_available(IDS[keyword]) == expected


def test_pqcrypto_backend_refuses_methods_it_does_not_have():
    backend = PqcryptoBackend()
    assert not backend.supports(M.CURVE25519) and not backend.supports(IDS["frodoa1"])
    with pytest.raises(ConfigurationError):
        backend.create(M.CURVE25519)


def test_missing_pqcrypto_makes_the_backend_unavailable_with_a_reason(monkeypatch):
    # None in sys.modules makes the import fail as if the wheel were not installed.
    monkeypatch.setitem(sys.modules, "pqcrypto", None)
    monkeypatch.setitem(sys.modules, "pqcrypto.kem", None)
    backend = PqcryptoBackend()
    assert not backend.available()
    assert backend.unavailable_reason.startswith("pqcrypto is not installed: ")
    assert backend.supports(IDS["hqc128"])  # still listed, as unavailable
    with pytest.raises(ConfigurationError, match="pqcrypto is not installed"):
        backend.create(IDS["hqc128"])


def test_importing_pqike_and_listing_algorithms_never_imports_oqs():
    # A fresh interpreter: importing oqs without liboqs would start a download and build.
    script = textwrap.dedent(
        """
        import sys
        import pqike, pqike.cli, pqike.crypto.kex
        assert "pqcrypto" not in sys.modules and "oqs" not in sys.modules
        from typer.testing import CliRunner
        out = CliRunner().invoke(pqike.cli.app, ["algorithms"])
        assert out.exit_code == 0, out.stdout
        print("oqs" in sys.modules, "hqc128" in out.stdout)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(OQS.available()), "True"]


def test_liboqs_probe_matches_the_library_search():
    backend = OqsBackend()
    if find_liboqs() is None:
        assert not backend.available()
        assert backend.unavailable_reason.startswith("liboqs is not installed: ")
        assert "oqs" not in sys.modules
        assert backend.supports(IDS["frodoa1"])  # listed, as unavailable
        with pytest.raises(ConfigurationError, match="liboqs is not installed"):
            backend.create(M.ML_KEM_768)
    else:
        assert backend.available() == (backend.unavailable_reason is None)


# --- transform IDs ------------------------------------------------------------------------


def test_mlkem_has_the_iana_ids_and_the_others_private_use_ones():
    assert (IDS["mlkem512"], IDS["mlkem768"], IDS["mlkem1024"]) == (35, 36, 37)
    assert all(value >= 1024 for value in DEFAULT_PRIVATE_USE_IDS.values())
    assert len(set(DEFAULT_PRIVATE_USE_IDS.values())) == len(DEFAULT_PRIVATE_USE_IDS)
    # strongSwan 6.0.0beta4-6's numbers for the same algorithms.
    assert [DEFAULT_PRIVATE_USE_IDS[k] for k in ("frodoa1", "frodos5", "bike1", "bike5")] == [
        1083,
        1088,
        1089,
        1091,
    ]
    assert DEFAULT_PRIVATE_USE_IDS["hqc128"] == 1101
    assert DEFAULT_PRIVATE_USE_IDS["sntrup761"] == 1111
    assert DEFAULT_PRIVATE_USE_IDS["mceliece348864"] == 1120


def test_every_private_use_kem_has_a_proposal_keyword_that_round_trips():
    for kem in PRIVATE_USE_KEMS:
        (proposal,) = parse_proposals(f"aes256gcm16-prfsha384-x25519-ke1_{kem.name.upper()}")
        assert Transform(TransformType.ADDKE1, kem.default_id) in proposal.transforms
        assert format_proposal(proposal) == f"aes256gcm16-prfsha384-x25519-ke1_{kem.name}"
        assert DEFAULT_REGISTRY.method_by_name(kem.name) == kem.default_id


def test_ids_can_be_overridden_for_a_configuration():
    ids = private_use_ids({"HQC128": 1201, "sntrup761": 40000})
    assert (ids["hqc128"], ids["sntrup761"], ids["hqc192"]) == (1201, 40000, 1102)
    methods = {m.name: m for m in private_use_methods({"hqc128": 1201})}
    assert methods["hqc128"].method == 1201 and methods["hqc128"].initiator_size == 2241


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hqc129": 1201}, "unknown KEM"),
        ({"mlkem768": 1201}, "IANA transform ID 36"),
        ({"hqc128": 0}, "from 1 to 65535"),
        ({"hqc128": 65536}, "from 1 to 65535"),
        ({"hqc128": "1201"}, "from 1 to 65535"),
        ({"hqc128": True}, "from 1 to 65535"),
        ({"hqc128": 31}, "assigned by IANA to CURVE25519"),
        ({"hqc128": 1102}, "share transform ID 1102"),
        ({"hqc128": 2000, "bike1": 2000}, "share transform ID 2000"),
    ],
)
def test_bad_id_overrides_are_configuration_errors(overrides, message):
    with pytest.raises(ConfigurationError, match=message) as refused:
        private_use_ids(overrides)
    assert refused.value.field == "kem_ids"


def test_built_registry_uses_the_overridden_ids():
    registry = build_registry({"hqc128": 1201})
    assert registry.info(1201).name == "hqc128"
    assert registry.method_by_name("hqc128") == 1201
    with pytest.raises(ConfigurationError):
        registry.info(1101)
    initiator, responder = registry.create(1201), registry.create(1201, "pqcrypto")
    _, _, responder_secret, initiator_secret = run(initiator, responder)
    assert initiator_secret == responder_secret and initiator.method == 1201
    assert registry.create(M.ML_KEM_768).method == M.ML_KEM_768


# --- handshakes ---------------------------------------------------------------------------

HANDSHAKE_KEMS = [
    m.name
    for m in DEFAULT_REGISTRY.methods()
    if m.kind == "kem" and DEFAULT_REGISTRY.is_available(m.method)
]


def test_mceliece_keys_travel_as_several_ke_payloads_in_hundreds_of_fragments():
    """A KE payload holds at most 65527 bytes; McEliece's 261 KB key is split across
    consecutive KE payloads (pqike's convention) inside one fragmented IKE_INTERMEDIATE."""
    assert info("mceliece348864").initiator_size > KE_PAYLOAD_MAX
    result = run_handshake("aes256gcm16-prfsha384-x25519-ke1_mceliece348864")
    assert result.established, result.failures
    (request,) = [
        m
        for m in result.trace.messages
        if m.exchange == "IKE_INTERMEDIATE" and m.sender == "initiator"
    ]
    assert request.payloads == "SKF{KE KE KE KE}"  # ceil(261120 / 65527) = 4
    assert request.fragments > 200


@pytest.mark.parametrize("keyword", HANDSHAKE_KEMS)
def test_handshake_with_each_available_kem_as_addke1_over_x25519(keyword):
    proposal = f"aes256gcm16-prfsha384-x25519-ke1_{keyword}"
    result = run_handshake(proposal)
    assert result.established, result.failures
    assert result.suite is not None and result.suite.describe() == proposal
    assert [(k.method, k.round) for k in result.key_exchanges] == [
        (M.CURVE25519, 0),
        (IDS[keyword], 1),
    ]
    assert len(result.key_exchanges[1].shared_secret) == info(keyword).secret_size


@pytest.mark.parametrize("side", ["initiator", "responder"])
def test_handshake_with_mlkem768_on_pqcrypto_one_side_and_openssl_the_other(side):
    pqcrypto = {"kex_backends": ((M.ML_KEM_768, "pqcrypto"),)}
    result = run_handshake(
        "aes256gcm16-prfsha384-x25519-ke1_mlkem768",
        initiator_options=pqcrypto if side == "initiator" else None,
        responder_options=pqcrypto if side == "responder" else None,
    )
    assert result.established, result.failures


def test_handshake_with_overridden_ids_on_both_sides():
    registry = build_registry({"sntrup761": 1201})

    def config(local_id, remote_id=None):
        base = make_config(
            "aes256gcm16-prfsha384-x25519-ke1_sntrup761",
            local_id=local_id,
            remote_id=remote_id,
        )
        # What a configuration file would do: the keyword stands for the overridden ID.
        (proposal,) = base.ike_proposals
        transforms = tuple(
            replace(t, id=1201) if t.type in ADDKE_TYPES else t for t in proposal.transforms
        )
        return replace(base, ike_proposals=(replace(proposal, transforms=transforms),))

    here, there = ("192.0.2.1", 500), ("192.0.2.2", 500)
    initiator = IkeSa(
        config("initiator.pqike.example", "responder.pqike.example"),
        is_initiator=True,
        local=here,
        remote=there,
        registry=registry,
    )
    responder = IkeSa(
        config("responder.pqike.example"),
        is_initiator=False,
        local=there,
        remote=here,
        registry=registry,
    )
    result = drive_pair(initiator, responder)
    assert result.established, result.failures
    assert [k.method for k in result.key_exchanges if isinstance(k, KeyExchangeCompleted)] == [
        M.CURVE25519,
        1201,
    ]


# --- liboqs (where the liboqs library is installed) ---------------------------------------


@needs_liboqs
@pytest.mark.parametrize("keyword", ["mlkem768", "mlkem1024"])
@pytest.mark.parametrize(("initiator", "responder"), [("openssl", "liboqs"), ("liboqs", "openssl")])
def test_liboqs_mlkem_interoperates_with_openssl(keyword, initiator, responder):
    _, _, responder_secret, initiator_secret = run(
        exchange(keyword, initiator), exchange(keyword, responder)
    )
    assert initiator_secret == responder_secret


@needs_liboqs
@pytest.mark.parametrize("keyword", ["mlkem768", "mlkem1024"])
def test_liboqs_seeded_mlkem_key_matches_openssl_from_the_same_seed(keyword):
    seed = bytes(range(64))
    private = {"mlkem768": mlkem.MLKEM768PrivateKey, "mlkem1024": mlkem.MLKEM1024PrivateKey}
    expected = private[keyword].from_seed_bytes(seed).public_key().public_bytes_raw()
    initiator = OQS.create(IDS[keyword], keypair_seed=seed)
    assert initiator.public_data() == expected
    ct, secret = exchange(keyword, "openssl").respond(initiator.public_data())
    assert initiator.complete(ct) == secret


@needs_liboqs
@pytest.mark.parametrize("keyword", [k for k in OQS_MECHANISMS if "mceliece" not in k])
def test_every_liboqs_kem_round_trips_with_the_sizes_of_its_method(keyword):
    if not OQS.supports(IDS[keyword]):
        pytest.skip(f"this liboqs ({OQS.liboqs_version}) has no {OQS_MECHANISMS[keyword]}")
    kei, ker, responder_secret, initiator_secret = run(
        exchange(keyword, "liboqs"), exchange(keyword, "liboqs")
    )
    method = info(keyword)
    assert initiator_secret == responder_secret
    assert (len(kei), len(ker), len(initiator_secret)) == (
        method.initiator_size,
        method.responder_size,
        method.secret_size,
    )
    with pytest.raises(InvalidSyntax):
        exchange(keyword, "liboqs").respond(kei[:-1])


@needs_liboqs
@pytest.mark.parametrize("keyword", ["mlkem512", "hqc128", "sntrup761", "mceliece348864"])
@pytest.mark.parametrize(
    ("initiator", "responder"), [("pqcrypto", "liboqs"), ("liboqs", "pqcrypto")]
)
def test_liboqs_and_pqcrypto_interoperate(keyword, initiator, responder):
    if not OQS.supports(IDS[keyword]):
        pytest.skip(f"this liboqs ({OQS.liboqs_version}) has no {OQS_MECHANISMS[keyword]}")
    _, _, responder_secret, initiator_secret = run(
        exchange(keyword, initiator), exchange(keyword, responder)
    )
    assert initiator_secret == responder_secret


@needs_liboqs
def test_liboqs_mlkem_responder_applies_the_modulus_check():
    ek = exchange("mlkem768", "liboqs").public_data()
    with pytest.raises(InvalidSyntax, match="modulus"):
        exchange("mlkem768", "liboqs").respond(with_coefficient(ek, 5, 3329))
