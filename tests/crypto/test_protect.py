"""SK payload protection: published AEAD vectors, pinned encryptions, tampering."""

import hmac

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from pqike.constants import EncrTransform, IntegTransform
from pqike.crypto.protect import encr_key_size, get_cipher, integ_key_size
from pqike.errors import ConfigurationError, IntegrityCheckFailed, LocalProtocolError

GCM, CBC, CHACHA = EncrTransform.AES_GCM_16, EncrTransform.AES_CBC, EncrTransform.CHACHA20_POLY1305
NONE = IntegTransform.NONE
SHA256, SHA384, SHA512 = (
    IntegTransform.HMAC_SHA2_256_128,
    IntegTransform.HMAC_SHA2_384_192,
    IntegTransform.HMAC_SHA2_512_256,
)
HMAC_HASH = {SHA256: "sha256", SHA384: "sha384", SHA512: "sha512"}

# Every suite with the bytes a fixed-IV encryption of PLAINTEXT must produce.
PINNED = {
    (GCM, 128, NONE): "a0a1a2a3a4a5a6a7d2f9c753cc0bdd57e0729c2a4e29ebd0e28c1090ea894b3470e7c657fa",
    (GCM, 256, NONE): "a0a1a2a3a4a5a6a743f3e939a1b212025f4712eff439382232281b66e882f808d28f0d8190",
    (
        CHACHA,
        None,
        NONE,
    ): "a0a1a2a3a4a5a6a788e29c8f4e947a036cef0674e95e29bf9f0f9b588721aca0823a9c39d9",
    (CBC, 128, SHA256): "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf14c8eaab8ca56496df4866f0e30c6f74"
    "10b2fea46257ca486c129e9f2a6db65f",
    (CBC, 128, SHA384): "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf14c8eaab8ca56496df4866f0e30c6f74"
    "dafef97e9e551ab9de140552062eb802300eb7c50cd722bd",
    (CBC, 128, SHA512): "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf14c8eaab8ca56496df4866f0e30c6f74"
    "684968ceea56b8d492a02ef862524f308959badd22110b43226ef3c2d8f92b35",
    (CBC, 256, SHA256): "a0a1a2a3a4a5a6a7a8a9aaabacadaeafa25a8d29cb090daa6dd09993dab96671"
    "f889492a4b1fb625955338a65e498c2a",
    (CBC, 256, SHA384): "a0a1a2a3a4a5a6a7a8a9aaabacadaeafa25a8d29cb090daa6dd09993dab96671"
    "a71da7e3fed91d4d9ef7272bafd03a39a68e456f03d75c02",
    (CBC, 256, SHA512): "a0a1a2a3a4a5a6a7a8a9aaabacadaeafa25a8d29cb090daa6dd09993dab96671"
    "bbb2ee528681c5827c0c76f9b4c76ab5c16187080cb11f34b04c2ef4119a70b8",
}
SUITES = [*PINNED, (GCM, 192, NONE), (CBC, 192, SHA256)]

SPI_I = bytes.fromhex("0123456789abcdef")
SPI_R = bytes.fromhex("fedcba9876543210")
# The inner payloads of an IKE_AUTH request: IDi(FQDN "moon"), nothing after it.
PLAINTEXT = bytes.fromhex("0000000c02000000") + b"moon"


def aad_for(cipher, plaintext_len: int) -> bytes:
    """IKE header + SK generic header of an IKE_AUTH request, lengths final (RFC 5282 5.1)."""
    encrypted = cipher.encrypted_size(plaintext_len)
    header = (
        SPI_I
        + SPI_R
        + bytes([46, 0x20, 35, 0x08])
        + (1).to_bytes(4, "big")
        + (28 + 4 + encrypted).to_bytes(4, "big")
    )
    return header + bytes([35, 0]) + (4 + encrypted).to_bytes(2, "big")


def fixed_keys(cipher):
    return bytes(range(cipher.key_size)), bytes(range(0x80, 0x80 + cipher.integ_key_size))


# --- the constructions against published vectors ------------------------------------


def test_chacha20_poly1305_construction_matches_rfc7539_2_8_2():
    # RFC 7539 2.8.2: key 80..9f, nonce = 07000000 | 4041424344454647. In RFC 7634 terms
    # the 32-bit constant is the salt (last 4 bytes of SK_e) and the 8 bytes are the IV.
    key = bytes(range(0x80, 0xA0))
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    plaintext = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for"
        b" the future, sunscreen would be it."
    )
    sealed = bytes.fromhex(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
        "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
        "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
        "3ff4def08e4b7a9de576d26586cec64b6116"
        "1ae10b594f09e26a7e902ecbd0600691"
    )
    cipher = get_cipher(CHACHA, None, NONE)
    sk_e = key + bytes.fromhex("07000000")
    # The vector's last plaintext byte, '.', reads as Pad Length 46: what decrypt returns
    # is the vector's plaintext minus that byte and 46 bytes of "padding".
    got = cipher.decrypt(sk_e, b"", aad, bytes.fromhex("4041424344454647") + sealed)
    assert plaintext[-1] == 46
    assert got == plaintext[: len(plaintext) - 47]


@pytest.mark.parametrize(
    ("key", "sealed"),
    [
        (  # GCM spec (McGrew & Viega) test case 4, AES-128
            "feffe9928665731c6d6a8f9467308308",
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
            "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
            "5bc94fbc3221a5db94fae95ae7121a47",
        ),
        (  # test case 16, AES-256
            "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
            "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
            "76fc6ece0f4e1768cddf8853bb2d551b",
        ),
    ],
)
def test_aes_gcm_construction_matches_published_vectors(key, sealed):
    # 96-bit IV cafebabe|facedbaddecaf888 = salt | IV in RFC 5282 3.1 terms.
    key = bytes.fromhex(key)
    aad = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    plaintext = bytes.fromhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    )
    cipher = get_cipher(GCM, len(key) * 8, NONE)
    sk_e = key + bytes.fromhex("cafebabe")
    got = cipher.decrypt(sk_e, b"", aad, bytes.fromhex("facedbaddecaf888" + sealed))
    assert plaintext[-1] == 0x39  # read as Pad Length 57
    assert got == plaintext[: len(plaintext) - 58]


# --- pinned encryptions, recomputed straight-line ------------------------------------


def reference_encrypt(suite, sk_e, sk_a, aad, plaintext, iv):
    encr, _, integ = suite
    if encr in (GCM, CHACHA):
        aead = AESGCM(sk_e[:-4]) if encr == GCM else ChaCha20Poly1305(sk_e[:-4])
        return iv + aead.encrypt(sk_e[-4:] + iv, plaintext + b"\x00", aad)
    pad = (16 - (len(plaintext) + 1) % 16) % 16
    encryptor = Cipher(algorithms.AES(sk_e), modes.CBC(iv)).encryptor()
    body = encryptor.update(plaintext + bytes(pad) + bytes([pad])) + encryptor.finalize()
    icv = hmac.new(sk_a, aad + iv + body, HMAC_HASH[integ]).digest()
    return iv + body + icv[: len(icv) // 2]


@pytest.mark.parametrize("suite", list(PINNED))
def test_fixed_iv_encryption_is_pinned(suite):
    cipher = get_cipher(*suite)
    sk_e, sk_a = fixed_keys(cipher)
    iv = bytes(range(0xA0, 0xA0 + cipher.iv_size))
    aad = aad_for(cipher, len(PLAINTEXT))
    encrypted = cipher.encrypt(sk_e, sk_a, aad, PLAINTEXT, iv=iv)
    assert encrypted == reference_encrypt(suite, sk_e, sk_a, aad, PLAINTEXT, iv)
    assert encrypted.hex() == PINNED[suite]
    assert len(encrypted) == cipher.encrypted_size(len(PLAINTEXT))


# --- round trips and sizes ------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("length", [0, 1, 14, 15, 16, 17, 100, 1200])
def test_round_trip(suite, length):
    cipher = get_cipher(*suite)
    sk_e, sk_a = fixed_keys(cipher)
    plaintext = bytes((i * 7) & 0xFF for i in range(length))
    aad = aad_for(cipher, length)
    encrypted = cipher.encrypt(sk_e, sk_a, aad, plaintext)
    assert len(encrypted) == cipher.encrypted_size(length)
    assert cipher.decrypt(sk_e, sk_a, aad, encrypted) == plaintext


@pytest.mark.parametrize("suite", SUITES)
def test_padding_is_minimal(suite):
    # AEAD: block size 1, only the Pad Length byte; CBC: up to the next 16-byte block.
    cipher = get_cipher(*suite)
    for length in range(40):
        body = cipher.encrypted_size(length) - cipher.iv_size - cipher.icv_size
        if cipher.block_size == 1:
            assert body == length + 1
        else:
            assert body % 16 == 0 and length + 1 <= body < length + 17


@pytest.mark.parametrize("suite", SUITES)
def test_random_ivs_differ(suite):
    cipher = get_cipher(*suite)
    sk_e, sk_a = fixed_keys(cipher)
    aad = aad_for(cipher, len(PLAINTEXT))
    first = cipher.encrypt(sk_e, sk_a, aad, PLAINTEXT)
    second = cipher.encrypt(sk_e, sk_a, aad, PLAINTEXT)
    assert first[: cipher.iv_size] != second[: cipher.iv_size]


@pytest.mark.parametrize(
    ("suite", "sizes"),
    [
        ((GCM, 128, NONE), (20, 0, 8, 16, 1)),
        ((GCM, 256, NONE), (36, 0, 8, 16, 1)),
        ((CHACHA, None, NONE), (36, 0, 8, 16, 1)),
        ((CBC, 128, SHA256), (16, 32, 16, 16, 16)),
        ((CBC, 256, SHA384), (32, 48, 16, 24, 16)),
        ((CBC, 256, SHA512), (32, 64, 16, 32, 16)),
    ],
)
def test_suite_parameters(suite, sizes):
    cipher = get_cipher(*suite)
    assert (
        cipher.key_size,
        cipher.integ_key_size,
        cipher.iv_size,
        cipher.icv_size,
        cipher.block_size,
    ) == sizes
    assert (cipher.encr_id, cipher.key_bits, cipher.integ_id) == suite
    assert get_cipher(*suite) is cipher


# --- every fault is IntegrityCheckFailed ----------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_tampering_with_any_byte_fails_the_integrity_check(suite):
    cipher = get_cipher(*suite)
    sk_e, sk_a = fixed_keys(cipher)
    aad = aad_for(cipher, len(PLAINTEXT))
    encrypted = cipher.encrypt(sk_e, sk_a, aad, PLAINTEXT)
    for i in range(len(encrypted)):
        bad = bytearray(encrypted)
        bad[i] ^= 0x01
        with pytest.raises(IntegrityCheckFailed):
            cipher.decrypt(sk_e, sk_a, aad, bytes(bad))
    for i in range(len(aad)):
        bad_aad = bytearray(aad)
        bad_aad[i] ^= 0x80
        with pytest.raises(IntegrityCheckFailed):
            cipher.decrypt(sk_e, sk_a, bytes(bad_aad), encrypted)


@pytest.mark.parametrize("suite", SUITES)
def test_wrong_keys_fail_the_integrity_check(suite):
    cipher = get_cipher(*suite)
    sk_e, sk_a = fixed_keys(cipher)
    aad = aad_for(cipher, len(PLAINTEXT))
    encrypted = cipher.encrypt(sk_e, sk_a, aad, PLAINTEXT)
    other_e = bytes(b ^ 0xFF for b in sk_e)
    if not sk_a:
        # AEAD: the tag depends on SK_e. CBC+HMAC verifies with SK_a only; a wrong SK_e
        # there decrypts to garbage instead, which the next layer rejects.
        with pytest.raises(IntegrityCheckFailed):
            cipher.decrypt(other_e, sk_a, aad, encrypted)
    else:
        with pytest.raises(IntegrityCheckFailed):
            cipher.decrypt(sk_e, bytes(len(sk_a)), aad, encrypted)


@pytest.mark.parametrize("suite", SUITES)
def test_short_or_misaligned_input_fails_the_integrity_check(suite):
    cipher = get_cipher(*suite)
    sk_e, sk_a = fixed_keys(cipher)
    aad = aad_for(cipher, len(PLAINTEXT))
    encrypted = cipher.encrypt(sk_e, sk_a, aad, PLAINTEXT)
    for cut in (0, 1, cipher.iv_size, cipher.iv_size + cipher.icv_size, len(encrypted) - 1):
        with pytest.raises(IntegrityCheckFailed):
            cipher.decrypt(sk_e, sk_a, aad, encrypted[:cut])
    with pytest.raises(IntegrityCheckFailed):
        cipher.decrypt(sk_e, sk_a, aad, encrypted + b"\x00")


@pytest.mark.parametrize("suite", [(GCM, 256, NONE), (CHACHA, None, NONE)])
def test_aead_pad_length_beyond_the_data_fails(suite):
    # A correctly sealed body whose Pad Length claims more bytes than there are.
    cipher = get_cipher(*suite)
    sk_e, _ = fixed_keys(cipher)
    aad = aad_for(cipher, 3)
    iv = bytes(8)
    aead = AESGCM(sk_e[:-4]) if suite[0] == GCM else ChaCha20Poly1305(sk_e[:-4])
    forged = iv + aead.encrypt(sk_e[-4:] + iv, b"abc\x04", aad)
    with pytest.raises(IntegrityCheckFailed):
        cipher.decrypt(sk_e, b"", aad, forged)
    assert (
        cipher.decrypt(sk_e, b"", aad, iv + aead.encrypt(sk_e[-4:] + iv, b"abc\x02", aad)) == b"a"
    )
    assert cipher.decrypt(sk_e, b"", aad, iv + aead.encrypt(sk_e[-4:] + iv, b"abc\x03", aad)) == b""


def test_cbc_pad_length_beyond_the_data_fails():
    suite = (CBC, 256, SHA256)
    cipher = get_cipher(*suite)
    sk_e, sk_a = fixed_keys(cipher)
    aad = aad_for(cipher, 15)
    iv = bytes(16)
    encryptor = Cipher(algorithms.AES(sk_e), modes.CBC(iv)).encryptor()
    body = encryptor.update(bytes(15) + b"\x10") + encryptor.finalize()
    icv = hmac.new(sk_a, aad + iv + body, "sha256").digest()[:16]
    with pytest.raises(IntegrityCheckFailed):
        cipher.decrypt(sk_e, sk_a, aad, iv + body + icv)


def test_integrity_failure_maps_to_silent_drop():
    # RFC 7296 2.21.2: no Notify is sent for a bad ICV.
    assert IntegrityCheckFailed("x").notify_type is None


# --- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encr_id", "key_bits", "integ_id"),
    [
        (GCM, 256, SHA256),  # AEAD with an INTEG (RFC 5282 8)
        (CHACHA, None, SHA384),
        (CBC, 256, NONE),  # CBC without one
        (CBC, 256, IntegTransform.HMAC_SHA1_96),
        (GCM, None, NONE),  # AES without a key length
        (GCM, 64, NONE),
        (CBC, 512, SHA256),
        (CHACHA, 256, NONE),  # RFC 7634 2: no key length attribute
        (EncrTransform.TRIPLE_DES, None, SHA256),
        (EncrTransform.AES_GCM_8, 256, NONE),
        (EncrTransform.AES_CTR, 256, SHA256),
    ],
)
def test_unsupported_suites_are_configuration_errors(encr_id, key_bits, integ_id):
    with pytest.raises(ConfigurationError):
        get_cipher(encr_id, key_bits, integ_id)


@pytest.mark.parametrize(
    ("encr_id", "key_bits", "size"),
    [
        (CBC, 128, 16),
        (CBC, 256, 32),
        (GCM, 128, 20),
        (GCM, 256, 36),
        (EncrTransform.AES_GCM_8, 256, 36),
        (EncrTransform.AES_CCM_16, 128, 19),
        (EncrTransform.AES_CTR, 128, 20),
        (CHACHA, None, 36),
        (EncrTransform.NULL, None, 0),
    ],
)
def test_encr_key_sizes_include_the_salt(encr_id, key_bits, size):
    assert encr_key_size(encr_id, key_bits) == size


@pytest.mark.parametrize(
    ("integ_id", "size"), [(NONE, 0), (SHA256, 32), (SHA384, 48), (SHA512, 64)]
)
def test_integ_key_sizes(integ_id, size):
    assert integ_key_size(integ_id) == size


def test_unknown_key_sizes_are_configuration_errors():
    with pytest.raises(ConfigurationError):
        integ_key_size(IntegTransform.AES_XCBC_96)
    with pytest.raises(ConfigurationError):
        encr_key_size(EncrTransform.TRIPLE_DES, None)
    with pytest.raises(ConfigurationError):
        encr_key_size(CBC, None)


def test_misuse_is_a_local_error():
    cipher = get_cipher(GCM, 256, NONE)
    sk_e, sk_a = fixed_keys(cipher)
    with pytest.raises(LocalProtocolError):
        cipher.encrypt(sk_e[:-1], sk_a, b"", PLAINTEXT)
    with pytest.raises(LocalProtocolError):
        cipher.encrypt(sk_e, sk_a, b"", PLAINTEXT, iv=bytes(12))


@pytest.mark.parametrize("suite", SUITES)
@settings(max_examples=50, deadline=None)
@given(encrypted=st.binary(max_size=200), aad=st.binary(max_size=40))
def test_arbitrary_input_raises_nothing_but_integrity_check_failed(suite, encrypted, aad):
    cipher = get_cipher(*suite)
    sk_e, sk_a = fixed_keys(cipher)
    with pytest.raises(IntegrityCheckFailed):
        cipher.decrypt(sk_e, sk_a, aad, encrypted)
