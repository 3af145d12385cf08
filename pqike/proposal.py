"""Proposals: strongSwan proposal syntax both ways, responder selection, initiator checks.

A proposal string such as ``aes256gcm16-prfsha384-x25519-ke1_mlkem768`` becomes a
:class:`~pqike.wire.payloads.Proposal` whose transforms are the alternatives the peer may
pick from (RFC 7296 3.3). Several algorithms of one type in one proposal are alternatives;
``ke1_`` .. ``ke7_`` name the Additional Key Exchange transform types of RFC 9370 2.2.1,
and ``none`` in one of them makes that round optional.

Selection follows RFC 7296 2.7 and RFC 9370 2.2.2: the responder picks exactly one
transform of each type and never the same key exchange method twice. The keyword table
here is self-contained on purpose: it parses every method, including ones no crypto
backend provides; whether a method can be used is checked when a configuration is built.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType

from .constants import (
    ADDKE_TYPES,
    EncrTransform,
    EsnTransform,
    IntegTransform,
    KeyExchangeMethod,
    PrfTransform,
    ProtocolId,
    TransformAttributeType,
    TransformType,
    name_of,
)
from .crypto.backends.ids import PRIVATE_USE_KEMS
from .errors import ConfigurationError, NoProposalChosen
from .wire.payloads import Proposal, Transform, TransformAttribute

__all__ = [
    "NegotiatedSuite",
    "check_selected",
    "format_proposal",
    "format_proposals",
    "parse_proposals",
    "select_proposal",
    "without_key_exchanges",
]

# --- keyword tables ---------------------------------------------------------------------

_Key = tuple[int, int, int | None]
"""(transform type, transform ID, key length in bits or None)."""


def _build_keywords() -> tuple[Mapping[str, _Key], Mapping[_Key, str]]:
    """Keywords of strongSwan's proposal_keywords_static.txt that pqike knows.

    The first keyword registered for a transform is the canonical one used by formatting.
    """
    names: dict[str, _Key] = {}
    canonical: dict[_Key, str] = {}

    def add(key: _Key, *keywords: str) -> None:
        for keyword in keywords:
            names[keyword] = key
        canonical.setdefault(key, keywords[0])

    encr, integ, prf = TransformType.ENCR, TransformType.INTEG, TransformType.PRF
    for bits in (128, 192, 256):
        add((encr, EncrTransform.AES_CBC, bits), f"aes{bits}")
        add(
            (encr, EncrTransform.AES_GCM_16, bits),
            f"aes{bits}gcm16",
            f"aes{bits}gcm128",
            f"aes{bits}gcm",
        )
        add((encr, EncrTransform.AES_GCM_12, bits), f"aes{bits}gcm12", f"aes{bits}gcm96")
        add((encr, EncrTransform.AES_GCM_8, bits), f"aes{bits}gcm8", f"aes{bits}gcm64")
    add((encr, EncrTransform.AES_CBC, 128), "aes")
    # strongSwan sends no Key Length attribute for ChaCha20-Poly1305 (RFC 7634 2 fixes it).
    add((encr, EncrTransform.CHACHA20_POLY1305, None), "chacha20poly1305")

    add((integ, IntegTransform.HMAC_SHA1_96, None), "sha1", "sha")
    add((integ, IntegTransform.HMAC_SHA2_256_128, None), "sha256", "sha2_256")
    add((integ, IntegTransform.HMAC_SHA2_384_192, None), "sha384", "sha2_384")
    add((integ, IntegTransform.HMAC_SHA2_512_256, None), "sha512", "sha2_512")

    add((prf, PrfTransform.HMAC_SHA1, None), "prfsha1")
    add((prf, PrfTransform.HMAC_SHA2_256, None), "prfsha256")
    add((prf, PrfTransform.HMAC_SHA2_384, None), "prfsha384")
    add((prf, PrfTransform.HMAC_SHA2_512, None), "prfsha512")

    add((TransformType.ESN, EsnTransform.ESN, None), "esn")
    add((TransformType.ESN, EsnTransform.NO_ESN, None), "noesn")
    return MappingProxyType(names), MappingProxyType(canonical)


def _build_ke_keywords() -> tuple[Mapping[str, int], Mapping[int, str]]:
    """Key exchange keywords (strongSwan's table; shared by KE and ke1_ .. ke7_).

    Then the KEMs without an IANA number, under their default private-use IDs
    (``pqike.crypto.backends.ids``: strongSwan's keywords where it had the method).
    """
    m = KeyExchangeMethod
    table: list[tuple[int, tuple[str, ...]]] = [
        (m.NONE, ("none", "modpnone")),
        (m.MODP768, ("modp768",)),
        (m.MODP1024, ("modp1024",)),
        (m.MODP1536, ("modp1536",)),
        (m.MODP2048, ("modp2048",)),
        (m.MODP3072, ("modp3072",)),
        (m.MODP4096, ("modp4096",)),
        (m.MODP6144, ("modp6144",)),
        (m.MODP8192, ("modp8192",)),
        (m.ECP256, ("ecp256",)),
        (m.ECP384, ("ecp384",)),
        (m.ECP521, ("ecp521",)),
        (m.MODP1024_160, ("modp1024s160",)),
        (m.MODP2048_224, ("modp2048s224",)),
        (m.MODP2048_256, ("modp2048s256",)),
        (m.ECP192, ("ecp192",)),
        (m.ECP224, ("ecp224",)),
        (m.BRAINPOOLP224, ("ecp224bp",)),
        (m.BRAINPOOLP256, ("ecp256bp",)),
        (m.BRAINPOOLP384, ("ecp384bp",)),
        (m.BRAINPOOLP512, ("ecp512bp",)),
        (m.CURVE25519, ("x25519", "curve25519")),
        (m.CURVE448, ("x448", "curve448")),
        (m.ML_KEM_512, ("mlkem512",)),
        (m.ML_KEM_768, ("mlkem768",)),
        (m.ML_KEM_1024, ("mlkem1024",)),
    ]
    table.extend((kem.default_id, (kem.name, *kem.aliases)) for kem in PRIVATE_USE_KEMS)
    names = {keyword: method for method, keywords in table for keyword in keywords}
    canonical: dict[int, str] = {method: keywords[0] for method, keywords in table}
    return MappingProxyType(names), MappingProxyType(canonical)


_KEYWORDS, _CANONICAL = _build_keywords()
_KE_KEYWORDS, _KE_CANONICAL = _build_ke_keywords()

# strongSwan parses ke<n>_<method> with sscanf("%2s%1u_%255s"), case-insensitively.
_ADDKE_TOKEN = re.compile(r"ke(\d+)_(.*)", re.IGNORECASE | re.DOTALL)

_AEAD = frozenset(
    {
        EncrTransform.AES_CCM_8,
        EncrTransform.AES_CCM_12,
        EncrTransform.AES_CCM_16,
        EncrTransform.AES_GCM_8,
        EncrTransform.AES_GCM_12,
        EncrTransform.AES_GCM_16,
        EncrTransform.CAMELLIA_CCM_8,
        EncrTransform.CAMELLIA_CCM_12,
        EncrTransform.CAMELLIA_CCM_16,
        EncrTransform.CHACHA20_POLY1305,
    }
)

# strongSwan (proposal.c, integ_prf_map): without an explicit PRF, an IKE proposal uses
# the PRF built on the same hash as its integrity algorithm.
_PRF_FOR_INTEG: Mapping[int, int] = MappingProxyType(
    {
        IntegTransform.HMAC_SHA1_96: PrfTransform.HMAC_SHA1,
        IntegTransform.HMAC_SHA2_256_128: PrfTransform.HMAC_SHA2_256,
        IntegTransform.HMAC_SHA2_384_192: PrfTransform.HMAC_SHA2_384,
        IntegTransform.HMAC_SHA2_512_256: PrfTransform.HMAC_SHA2_512,
    }
)

_KE_TYPES = frozenset({TransformType.KE, *ADDKE_TYPES})

_TYPE_ORDER: Mapping[int, int] = MappingProxyType(
    {
        t: i
        for i, t in enumerate(
            (
                TransformType.ENCR,
                TransformType.INTEG,
                TransformType.PRF,
                TransformType.KE,
                TransformType.ESN,
                *ADDKE_TYPES,
            )
        )
    }
)

_ENUM_FOR_TYPE: Mapping[int, type[IntEnum]] = MappingProxyType(
    {
        TransformType.ENCR: EncrTransform,
        TransformType.PRF: PrfTransform,
        TransformType.INTEG: IntegTransform,
        TransformType.ESN: EsnTransform,
    }
)


def _type_order(transform_type: int) -> tuple[int, int]:
    """Sort key: ENCR, INTEG, PRF, KE, ESN, ADDKE1..7, then unknown types by number."""
    return (_TYPE_ORDER.get(transform_type, len(_TYPE_ORDER)), transform_type)


def _type_name(transform_type: int) -> str:
    return name_of(TransformType, transform_type)


def _key_length_attributes(bits: int | None) -> tuple[TransformAttribute, ...]:
    if bits is None:
        return ()
    return (TransformAttribute(TransformAttributeType.KEY_LENGTH, bits),)


def _keyword(transform: Transform) -> str:
    """The canonical strongSwan keyword of ``transform``, or a registry name if it has none.

    Registry names (``AES_CTR_256``, ``KeyExchangeMethod(99)``) are not keywords, so a
    transform pqike cannot configure still prints, but does not parse back.
    """
    plain_key_length = transform.attributes == _key_length_attributes(transform.key_length)
    if transform.type in _KE_TYPES:
        prefix = ""
        if transform.type != TransformType.KE:
            prefix = f"ke{transform.type - TransformType.ADDKE1 + 1}_"
        name = _KE_CANONICAL.get(transform.id) if not transform.attributes else None
        return prefix + (name or name_of(KeyExchangeMethod, transform.id))
    name = None
    if plain_key_length:
        name = _CANONICAL.get((transform.type, transform.id, transform.key_length))
    if name is not None:
        return name
    enum = _ENUM_FOR_TYPE.get(transform.type)
    if enum is None:
        name = f"{_type_name(transform.type)}_{transform.id}"
    else:
        name = name_of(enum, transform.id)
    if transform.key_length is not None:
        name += f"_{transform.key_length}"
    return name


# --- parsing ------------------------------------------------------------------------------


def parse_proposals(text: str, *, protocol: int = ProtocolId.IKE) -> tuple[Proposal, ...]:
    """Parse strongSwan proposal syntax into proposals numbered 1..n (each text once per
    process: the result is frozen, and sharing it lets the selection memos hit).

    Proposals are separated by ``,`` and algorithms by ``-``; several algorithms of one
    type are alternatives, kept in the order written. In an IKE proposal without a PRF
    the PRF follows the integrity algorithm (``sha256`` gives ``prfsha256``), and an ESP
    proposal without ``esn``/``noesn`` gets NO_ESN, both as strongSwan does. ESP
    proposals get an empty SPI for the core to fill.

    Raises ``ConfigurationError(field="proposal")`` naming the bad token and proposal.
    """
    return _parse_proposals(text, int(protocol))


@functools.lru_cache(maxsize=256)
def _parse_proposals(text: str, protocol: int) -> tuple[Proposal, ...]:
    if protocol not in (ProtocolId.IKE, ProtocolId.ESP):
        raise ConfigurationError(
            f"proposals for protocol {name_of(ProtocolId, protocol)} are not supported",
            field="proposal",
        )
    parts = [part.strip() for part in text.split(",")]
    for part in parts:
        if not part:
            raise _error(f"empty proposal in '{text}'")
    # RFC 7296 3.3.1: the Proposal Num field is one octet.
    if len(parts) > 255:
        raise _error(f"too many proposals ({len(parts)}) in '{text[:40]}...', at most 255")
    protocol = ProtocolId(protocol)
    return tuple(_parse_one(part, number, protocol) for number, part in enumerate(parts, 1))


def _error(message: str) -> ConfigurationError:
    return ConfigurationError(message, field="proposal")


def _token_transform(token: str, proposal: str) -> Transform:
    lowered = token.lower()
    addke = _ADDKE_TOKEN.fullmatch(lowered)
    if addke is not None:
        round_number = int(addke.group(1))
        if not 1 <= round_number <= len(ADDKE_TYPES):
            raise _error(
                f"additional key exchange '{token}' in proposal '{proposal}' "
                f"is not one of ke1_ to ke7_"
            )
        method = _KE_KEYWORDS.get(addke.group(2))
        if method is None:
            raise _error(f"unknown key exchange method '{token}' in proposal '{proposal}'")
        return Transform(ADDKE_TYPES[round_number - 1], method)
    method = _KE_KEYWORDS.get(lowered)
    if method is not None:
        return Transform(TransformType.KE, method)
    key = _KEYWORDS.get(lowered)
    if key is None:
        raise _error(f"unknown algorithm '{token}' in proposal '{proposal}'")
    ttype, tid, bits = key
    return Transform(ttype, tid, _key_length_attributes(bits))


def _parse_one(text: str, number: int, protocol: int) -> Proposal:
    by_type: dict[int, list[tuple[Transform, str]]] = {}
    for raw in text.split("-"):
        token = raw.strip()
        if not token:
            raise _error(f"empty algorithm in proposal '{text}'")
        transform = _token_transform(token, text)
        alternatives = by_type.setdefault(transform.type, [])
        if any(transform == seen for seen, _ in alternatives):
            raise _error(f"duplicate algorithm '{token}' in proposal '{text}'")
        alternatives.append((transform, token))

    def first_token(ttype: int) -> str:
        return by_type[ttype][0][1]

    is_ike = protocol == ProtocolId.IKE
    kind = name_of(ProtocolId, protocol)
    if is_ike and TransformType.ESN in by_type:
        raise _error(
            f"sequence number option '{first_token(TransformType.ESN)}' in proposal "
            f"'{text}' belongs in ESP proposals only"
        )
    if not is_ike and TransformType.PRF in by_type:
        raise _error(
            f"PRF '{first_token(TransformType.PRF)}' in proposal '{text}' belongs in "
            f"IKE proposals only"
        )

    encr = by_type.get(TransformType.ENCR, [])
    if not encr:
        raise _error(f"no encryption algorithm in proposal '{text}'")
    aead = [token for t, token in encr if t.id in _AEAD]
    classic = [token for t, token in encr if t.id not in _AEAD]
    integ = by_type.get(TransformType.INTEG, [])
    if aead and classic:
        raise _error(
            f"AEAD algorithm '{aead[0]}' and non-AEAD algorithm '{classic[0]}' cannot "
            f"share proposal '{text}'"
        )
    # RFC 7296 3.3: a combined-mode (AEAD) proposal offers no integrity algorithm.
    if aead and integ:
        raise _error(
            f"integrity algorithm '{integ[0][1]}' cannot be combined with AEAD "
            f"algorithm '{aead[0]}' in proposal '{text}'"
        )
    if classic and not integ:
        raise _error(
            f"no integrity algorithm for non-AEAD algorithm '{classic[0]}' in proposal '{text}'"
        )

    if is_ike:
        if TransformType.PRF not in by_type:
            derived: list[tuple[Transform, str]] = []
            for t, token in integ:
                prf = _PRF_FOR_INTEG.get(t.id)
                if prf is not None and all(d.id != prf for d, _ in derived):
                    derived.append((Transform(TransformType.PRF, prf), token))
            if not derived:
                raise _error(
                    f"no PRF in proposal '{text}' and no integrity algorithm to derive it from"
                )
            by_type[TransformType.PRF] = derived
        ke = by_type.get(TransformType.KE, [])
        for t, token in ke:
            # RFC 9370 2.2.1: NONE makes an *additional* key exchange optional; the
            # IKE_SA_INIT key exchange itself is mandatory (RFC 7296 1.2).
            if t.id == KeyExchangeMethod.NONE:
                raise _error(
                    f"key exchange '{token}' in IKE proposal '{text}' is only meaningful "
                    f"as ke1_ to ke7_ or in ESP proposals"
                )
        if not ke:
            raise _error(f"no key exchange method in {kind} proposal '{text}'")
    elif TransformType.ESN not in by_type:
        by_type[TransformType.ESN] = [(Transform(TransformType.ESN, EsnTransform.NO_ESN), "")]

    transforms = tuple(t for ttype in sorted(by_type, key=_type_order) for t, _ in by_type[ttype])
    return Proposal(number=number, protocol_id=protocol, transforms=transforms)


# --- formatting -------------------------------------------------------------------------


def format_proposal(proposal: Proposal) -> str:
    """Write ``proposal`` back in canonical strongSwan syntax.

    Types come in the order ENCR, INTEG, PRF, KE, ESN, ADDKE1..7; alternatives of one
    type keep their order. Transforms without a keyword print as registry names.
    """
    ordered = sorted(proposal.transforms, key=lambda t: _type_order(t.type))
    return "-".join(_keyword(t) for t in ordered)


def format_proposals(proposals: Iterable[Proposal]) -> str:
    """Write several proposals in strongSwan syntax, joined by ``,``."""
    return ",".join(format_proposal(p) for p in proposals)


def without_key_exchanges(proposal: Proposal) -> Proposal:
    """Return ``proposal`` without KE and ADDKE transforms.

    For the Child SA created in IKE_AUTH, which has no KE payload of its own (RFC 7296
    1.2): strongSwan ignores the key exchange transforms of both sides there
    (PROPOSAL_SKIP_KE), so pass both the offered and the configured proposals through this.
    """
    transforms = proposal.transforms
    hit = _NO_KE_MEMO.get(id(transforms))
    if hit is None:
        # One tuple per distinct input, so the memos below see the same identity.
        hit = (transforms, tuple(t for t in transforms if t.type not in _KE_TYPES))
        _remember(_NO_KE_MEMO, id(transforms), hit)
    kept = hit[1]
    if len(kept) == len(transforms):
        return proposal  # a frozen value: nothing to take out, nothing to copy
    return Proposal(proposal.number, proposal.protocol_id, kept, proposal.spi)


# --- memos ----------------------------------------------------------------------------------
#
# Selection and checking are pure functions of frozen values, and a peer meets the same
# few offers again and again: each distinct question is answered once. The keys name the
# transform tuples by identity (the decoder hands out one tuple per distinct wire
# encoding, a configuration keeps its own), which costs one C-level hash where hashing
# the dataclasses would call Python for every transform; each entry keeps the tuples it
# names alive, so their ids cannot be reused while it exists. SPIs, fresh in every Child
# SA offer and no part of an answer, are left out. Only answers are kept (a refusal is
# recomputed and raises with its reason every time); past _MEMO_LIMIT entries a memo
# starts over.

_MEMO_LIMIT = 1024
_OfferKey = tuple[tuple[int, int, int], ...]


def _offer_key(proposals: Sequence[Proposal]) -> _OfferKey:
    return tuple([(id(p.transforms), p.number, p.protocol_id) for p in proposals])


def _anchors(proposals: Sequence[Proposal]) -> tuple[tuple[Transform, ...], ...]:
    return tuple([p.transforms for p in proposals])


def _remember(memo: dict, key: object, value: object) -> None:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value


_SELECT_MEMO: dict[tuple, tuple[object, tuple[int, tuple[Transform, ...]]]] = {}
_CHECK_MEMO: dict[tuple, tuple[object, NegotiatedSuite]] = {}
_SUITE_MEMO: dict[int, tuple[tuple[Transform, ...], NegotiatedSuite]] = {}
_NO_KE_MEMO: dict[int, tuple[tuple[Transform, ...], tuple[Transform, ...]]] = {}


# --- selection ----------------------------------------------------------------------------


def _by_type(proposal: Proposal) -> dict[int, list[Transform]]:
    grouped: dict[int, list[Transform]] = {}
    for t in proposal.transforms:
        grouped.setdefault(t.type, []).append(t)
    return grouped


def _same(a: Transform, b: Transform) -> bool:
    """Same type, ID and attributes (so Key Length must be equal, RFC 7296 3.3.5)."""
    return a.type == b.type and a.id == b.id and set(a.attributes) == set(b.attributes)


def _is_optional(transform_type: int, protocol: int) -> bool:
    """Whether a missing type counts as {NONE} (RFC 9370 2.2.1; strongSwan for ESP KE)."""
    if transform_type in ADDKE_TYPES:
        return True
    # A CREATE_CHILD_SA without PFS carries no KE transform; strongSwan treats KE in
    # ESP/AH proposals like an ADDKE type, so a configured NONE accepts that.
    return transform_type == TransformType.KE and protocol != ProtocolId.IKE


def _ke_candidates(
    transform_type: int,
    mine: list[Transform] | None,
    theirs: list[Transform] | None,
    protocol: int,
    prefer_ke: int | None,
) -> list[Transform]:
    if mine is None or theirs is None:
        present = mine if mine is not None else theirs or []
        if _is_optional(transform_type, protocol) and any(
            t.id == KeyExchangeMethod.NONE for t in present
        ):
            return [Transform(transform_type, KeyExchangeMethod.NONE)]
        return []
    common: list[Transform] = []
    for m in mine:
        for o in theirs:
            if _same(m, o) and o not in common:
                common.append(o)
    if transform_type == TransformType.KE and not _is_optional(transform_type, protocol):
        common = [t for t in common if t.id != KeyExchangeMethod.NONE]
    if transform_type == TransformType.KE and prefer_ke is not None:
        common.sort(key=lambda t: t.id != prefer_ke)  # stable: the rest keep our order
    return common


def _choose_key_exchanges(
    candidates: Sequence[tuple[int, list[Transform]]],
) -> list[Transform] | None:
    """First combination, in our order of preference, that repeats no method.

    RFC 9370 2.2.2: the responder MUST NOT select the same method for two key exchanges
    (NONE excepted). A greedy pick can dead-end (``ke1_x25519-ke1_mlkem768`` after KE
    x25519), so this backtracks; failed states are remembered to bound the search.
    """
    failed: set[tuple[int, frozenset[int]]] = set()

    def search(index: int, used: frozenset[int]) -> list[Transform] | None:
        if index == len(candidates):
            return []
        if (index, used) in failed:
            return None
        for t in candidates[index][1]:
            if t.id != KeyExchangeMethod.NONE and t.id in used:
                continue
            now_used = used | {t.id} if t.id != KeyExchangeMethod.NONE else used
            rest = search(index + 1, now_used)
            if rest is not None:
                return [t, *rest]
        failed.add((index, used))
        return None

    return search(0, frozenset())


def _match(
    configured: Proposal, offered: Proposal, prefer_ke: int | None
) -> tuple[Transform, ...] | str:
    """The transforms selected from ``offered`` for ``configured``, or why none fit."""
    mine_by_type, theirs_by_type = _by_type(configured), _by_type(offered)
    protocol = offered.protocol_id
    selected: list[Transform] = []
    ke_candidates: list[tuple[int, list[Transform]]] = []
    aead = False
    for ttype in sorted(mine_by_type.keys() | theirs_by_type.keys(), key=_type_order):
        mine, theirs = mine_by_type.get(ttype), theirs_by_type.get(ttype)
        # RFC 7296 3.3: with a combined-mode cipher, integrity is absent or NONE; strongSwan
        # ignores whatever INTEG alternatives a proposal mixing both kinds carries.
        if ttype == TransformType.INTEG and aead:
            continue
        if ttype in _KE_TYPES:
            options = _ke_candidates(ttype, mine, theirs, protocol, prefer_ke)
            if not options:
                return f"proposal {offered.number} offers no acceptable {_type_name(ttype)}"
            ke_candidates.append((ttype, options))
            continue
        # RFC 7296 3.3.6: a proposal with a type we do not use, or lacking one we need,
        # is unacceptable.
        if mine is None:
            return f"proposal {offered.number} has {_type_name(ttype)}, which we do not use"
        if theirs is None:
            return f"proposal {offered.number} lacks {_type_name(ttype)}"
        pick = next((o for m in mine for o in theirs if _same(m, o)), None)
        if pick is None:
            return f"proposal {offered.number} offers no acceptable {_type_name(ttype)}"
        selected.append(pick)
        if ttype == TransformType.ENCR:
            aead = pick.id in _AEAD
    chosen = _choose_key_exchanges(ke_candidates)
    if chosen is None:
        return f"proposal {offered.number} allows no key exchanges without using a method twice"
    # strongSwan (proposal.c select_algos) omits types resolved to NONE from its answer;
    # check_selected reads an absent ADDKE type as NONE.
    selected.extend(t for t in chosen if t.id != KeyExchangeMethod.NONE)
    selected.sort(key=lambda t: _type_order(t.type))
    return tuple(selected)


def select_proposal(
    offered: Sequence[Proposal],
    configured: Sequence[Proposal],
    *,
    prefer_ke: int | None = None,
) -> Proposal:
    """Pick the proposal to answer with, as a responder (RFC 7296 2.7, RFC 9370 2.2.2).

    Our configured proposals are tried in order and, for each, the offered ones in order;
    the first match wins (strongSwan's default, prefer_configured_proposals=yes). A match
    picks one transform per type present on either side, in our order of preference; a
    type on one side only fails the match, except ADDKE types (and KE in ESP), where the
    missing side counts as NONE. ``prefer_ke`` is the method of the initiator's KE payload:
    it is taken when acceptable. No method is selected twice across KE and ADDKE1..7.

    Returns the offered proposal's number, protocol and SPI with one transform per type;
    types resolved to NONE are omitted. Raises ``NoProposalChosen`` when nothing matches.
    """
    if not offered:
        raise NoProposalChosen("the peer offered no proposals")
    if not configured:
        raise NoProposalChosen("no proposals are configured")
    key = (_offer_key(offered), _offer_key(configured), prefer_ke)
    hit = _SELECT_MEMO.get(key)
    if hit is None:
        hit = ((_anchors(offered), _anchors(configured)), _select(offered, configured, prefer_ke))
        _remember(_SELECT_MEMO, key, hit)
    index, transforms = hit[1]
    theirs = offered[index]
    return Proposal(theirs.number, theirs.protocol_id, transforms, theirs.spi)


def _select(
    offered: Sequence[Proposal], configured: Sequence[Proposal], prefer_ke: int | None
) -> tuple[int, tuple[Transform, ...]]:
    """``select_proposal``'s work: the index of the offered proposal and its transforms."""
    first_reason: str | None = None
    for ours in configured:
        for index, theirs in enumerate(offered):
            if theirs.protocol_id != ours.protocol_id:
                continue
            result = _match(ours, theirs, prefer_ke)
            if isinstance(result, str):
                first_reason = first_reason or result
                continue
            if result == theirs.transforms:
                result = theirs.transforms  # the same identity for the memos downstream
            return index, result
    if first_reason is None:
        protocols = sorted({name_of(ProtocolId, p.protocol_id) for p in configured})
        raise NoProposalChosen(f"the peer offered no proposal for {', '.join(protocols)}")
    raise NoProposalChosen(f"no offered proposal matches a configured one ({first_reason})")


# --- the initiator's view -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NegotiatedSuite:
    """The algorithms of one SA, read from a selected proposal.

    ``integ`` is 0 (NONE) with an AEAD cipher; ``prf`` is None for ESP; ``ke`` is None
    when there is no key exchange (an ESP proposal without PFS); ``addke`` holds the
    methods of ADDKE1..ADDKE7, 0 meaning NONE; ``esn`` is None for IKE.
    """

    encr: int
    key_bits: int | None
    prf: int | None
    integ: int
    ke: int | None
    addke: tuple[int, ...]
    esn: int | None

    @classmethod
    def from_proposal(cls, proposal: Proposal) -> NegotiatedSuite:
        """Read a proposal with exactly one transform per type (an absent ADDKE is NONE).

        Raises ``NoProposalChosen`` if the proposal does not describe a single suite.
        """
        transforms = proposal.transforms
        hit = _SUITE_MEMO.get(id(transforms))
        if hit is None:
            hit = (transforms, cls._read(proposal))
            _remember(_SUITE_MEMO, id(transforms), hit)
        return hit[1]

    @classmethod
    def _read(cls, proposal: Proposal) -> NegotiatedSuite:
        chosen: dict[int, Transform] = {}
        for t in proposal.transforms:
            if t.type not in _TYPE_ORDER:
                raise NoProposalChosen(f"transform type {t.type} has no place in an SA")
            if t.type in chosen:
                raise NoProposalChosen(
                    f"proposal {proposal.number} has more than one {_type_name(t.type)}"
                )
            chosen[t.type] = t
        encr = chosen.get(TransformType.ENCR)
        if encr is None:
            raise NoProposalChosen(f"proposal {proposal.number} has no ENCR transform")

        def id_of(ttype: int) -> int | None:
            t = chosen.get(ttype)
            return None if t is None else t.id

        ke = id_of(TransformType.KE)
        return cls(
            encr=encr.id,
            key_bits=encr.key_length,
            prf=id_of(TransformType.PRF),
            integ=id_of(TransformType.INTEG) or IntegTransform.NONE,
            ke=ke or None,
            addke=tuple(id_of(t) or KeyExchangeMethod.NONE for t in ADDKE_TYPES),
            esn=id_of(TransformType.ESN),
        )

    @property
    def rounds(self) -> tuple[tuple[int, int], ...]:
        """``((n, method), ...)`` for each ADDKEn that is not NONE, in ascending order.

        RFC 9370 2.2.2: one IKE_INTERMEDIATE (or IKE_FOLLOWUP_KE) exchange each.
        """
        if not any(self.addke):  # NONE is 0: the common case, asked on every message
            return ()
        return tuple(
            (n, method)
            for n, method in enumerate(self.addke, 1)
            if method != KeyExchangeMethod.NONE
        )

    def describe(self) -> str:
        """The negotiated suite in strongSwan syntax, e.g. ``aes256gcm16-prfsha384-x25519``."""
        return _describe(self)

    def _describe(self) -> str:
        transforms = [
            Transform(TransformType.ENCR, self.encr, _key_length_attributes(self.key_bits))
        ]
        if self.integ != IntegTransform.NONE:
            transforms.append(Transform(TransformType.INTEG, self.integ))
        if self.prf is not None:
            transforms.append(Transform(TransformType.PRF, self.prf))
        if self.ke is not None:
            transforms.append(Transform(TransformType.KE, self.ke))
        if self.esn is not None:
            transforms.append(Transform(TransformType.ESN, self.esn))
        transforms.extend(Transform(ADDKE_TYPES[n - 1], method) for n, method in self.rounds)
        return "-".join(_keyword(t) for t in transforms)


@functools.lru_cache(maxsize=256)
def _describe(suite: NegotiatedSuite) -> str:
    # Logs and event records ask it for every SA; a daemon sees a handful of suites.
    return suite._describe()


def check_selected(offered: Sequence[Proposal], selected: Proposal) -> NegotiatedSuite:
    """Check the responder's chosen proposal against what we offered, as the initiator.

    The answer must hold exactly one transform per type, each offered in our proposal of
    that number (RFC 7296 2.7). An ADDKE type missing from the answer means NONE, which
    is acceptable only if we offered NONE for it (or did not offer the type); otherwise
    the responder dropped a required key exchange, a downgrade. Raises
    ``NoProposalChosen`` with the reason.
    """
    key = (_offer_key(offered), selected.number, selected.protocol_id, id(selected.transforms))
    hit = _CHECK_MEMO.get(key)
    if hit is None:
        hit = ((_anchors(offered), selected.transforms), _check(offered, selected))
        _remember(_CHECK_MEMO, key, hit)
    return hit[1]


def _check(offered: Sequence[Proposal], selected: Proposal) -> NegotiatedSuite:
    ours = next(
        (
            p
            for p in offered
            if p.number == selected.number and p.protocol_id == selected.protocol_id
        ),
        None,
    )
    if ours is None:
        raise NoProposalChosen(
            f"the responder chose proposal {selected.number} "
            f"({name_of(ProtocolId, selected.protocol_id)}), which we did not offer"
        )
    ours_by_type = _by_type(ours)
    chosen: dict[int, Transform] = {}
    for t in selected.transforms:
        if t.type in chosen:
            raise NoProposalChosen(
                f"the responder chose more than one {_type_name(t.type)} transform"
            )
        chosen[t.type] = t
    encr = chosen.get(TransformType.ENCR)
    aead = encr is not None and encr.id in _AEAD
    for t in chosen.values():
        if any(_same(t, o) for o in ours_by_type.get(t.type, ())):
            continue
        # RFC 7296 3.3: INTEG NONE beside an AEAD cipher is allowed even if we sent none.
        if aead and t.type == TransformType.INTEG and t.id == IntegTransform.NONE:
            continue
        raise NoProposalChosen(
            f"the responder chose {_type_name(t.type)} {_keyword(t)}, which proposal "
            f"{ours.number} did not offer"
        )
    integ = chosen.get(TransformType.INTEG)
    if aead and integ is not None and integ.id != IntegTransform.NONE:
        raise NoProposalChosen("the responder chose an integrity algorithm with an AEAD cipher")
    for ttype, alternatives in ours_by_type.items():
        if ttype in chosen or (ttype == TransformType.INTEG and aead):
            continue
        if _is_optional(ttype, ours.protocol_id):
            if any(t.id == KeyExchangeMethod.NONE for t in alternatives):
                continue
            raise NoProposalChosen(
                f"the responder left out {_type_name(ttype)}, for which proposal "
                f"{ours.number} did not offer NONE"
            )
        raise NoProposalChosen(f"the responder's answer lacks {_type_name(ttype)}")
    methods = [
        t.id for t in chosen.values() if t.type in _KE_TYPES and t.id != KeyExchangeMethod.NONE
    ]
    if len(methods) != len(set(methods)):
        # RFC 9370 2.2.2: the responder MUST NOT select one method twice.
        raise NoProposalChosen("the responder chose the same key exchange method twice")
    if selected.protocol_id == ProtocolId.IKE and (
        TransformType.KE not in chosen or chosen[TransformType.KE].id == KeyExchangeMethod.NONE
    ):
        raise NoProposalChosen("the responder chose no key exchange method for the IKE SA")
    return NegotiatedSuite.from_proposal(selected)
