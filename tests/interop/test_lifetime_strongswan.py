"""An IKE SA's whole life, pqike against strongSwan 6.0.1, in both directions.

Each case runs with pqike as the initiator (``pqike initiate --stay`` in the background,
scripted with ``--rekey`` and friends) against a strongSwan responder, and with
strongSwan initiating to ``pqike respond``. strongSwan is driven with ``swanctl``
(``--rekey``, ``--initiate --child``, ``--terminate``) and its lifetimes in
swanctl.conf; pqike with its steps and the lifetimes of its TOML file.

What every case checks, besides its own point:

- the keys of every SA that came up are the same on both sides, byte for byte: each
  Child SA's KEYMAT (RFC 7296 2.17, with the KE and ADDKE secrets of RFC 9370 2.2.4),
  matched by its ESP SPIs, and the SK_* of the first IKE SA and of every IKE SA a rekey
  made (RFC 7296 2.18), from charon's level-4 log against pqike's event log;
- both sides end with the same IKE SA and the same Child SAs installed;
- charon's log has no error line, pqike's event log no failure.

Waits poll the event logs and ``swanctl --list-sas`` with generous time-outs; nothing
sleeps a fixed time.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from pqike.interop.lab import Lab, LabError, StrongSwan, ensure_strongswan
from pqike.interop.peer import (
    PqikeInitiator,
    PqikeResponder,
    charon_errors,
    lab_unavailable,
    strongswan_child_key_sets,
    strongswan_ike_key_sets,
    write_pqike_config,
)

pytestmark = pytest.mark.interop

_SKIP = lab_unavailable()
if _SKIP:
    pytestmark = [pytestmark, pytest.mark.skip(reason=_SKIP)]

PREFIX = "pqlt"
PQIKE_INITIATES = "pqike-to-strongswan"
STRONGSWAN_INITIATES = "strongswan-to-pqike"
DIRECTIONS = (PQIKE_INITIATES, STRONGSWAN_INITIATES)

HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
TWO_ROUNDS = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"
ESP_HYBRID = "aes256gcm16-x25519-ke1_mlkem768"

WAIT = 30.0
"""Seconds any one thing may take on a busy CI machine before the case fails."""


@pytest.fixture(scope="module")
def strongswan():
    return ensure_strongswan(install=True)


# ---------------------------------------------------------------------------
# the two peers


@dataclass
class Pair:
    """A running pqike and charon with one IKE SA between them."""

    lab: Lab
    direction: str
    charon: StrongSwan
    pqike: PqikeInitiator | PqikeResponder

    @property
    def pqike_initiates(self) -> bool:
        return self.direction == PQIKE_INITIATES

    def events(self) -> list[dict]:
        return self.pqike.events()

    def wait(self, done: Callable[[list[dict]], bool], what: str, timeout: float = WAIT):
        """The pqike records once ``done(records)`` holds; fails the case after ``timeout``."""
        records = self.pqike.wait_for(done, timeout=timeout)
        assert done(records), f"pqike never logged {what}\n{self.diagnose()}"
        return records

    def wait_charon(self, done: Callable[[list], bool], what: str, timeout: float = WAIT):
        """charon's IKE SAs once ``done(sas)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            sas = self.charon.list_sas()
            if done(sas):
                return sas
            if time.monotonic() > deadline:
                raise AssertionError(f"charon never showed {what}: {sas}\n{self.diagnose()}")
            time.sleep(0.05)

    def diagnose(self) -> str:
        return (
            f"--- pqike ---\n{self.pqike.output()[-4000:]}\n"
            f"--- charon log (tail) ---\n{self.charon.log()[-4000:]}"
        )


def start_pair(
    lab: Lab,
    direction: str,
    *,
    ike: str = HYBRID,
    esp: str = ESP_HYBRID,
    sw_ike: str | None = None,
    sw_esp: str | None = None,
    charon: dict | None = None,
    pqike_ike: dict | None = None,
    pqike_esp: dict | None = None,
    steps: tuple[str, ...] = (),
    stay: float = 120.0,
    retransmit_timeout: float = 2.0,
    retransmit_tries: int = 3,
) -> Pair:
    """Start both peers (pqike on the left) and wait until the IKE SA is up on both."""
    sw = {
        "ike_proposal": sw_ike or ike,
        "esp_proposal": sw_esp or esp,
        "extra_children": ("child2",),
        **(charon or {}),
    }
    pq = {
        "ike_proposal": ike,
        "esp_proposal": esp,
        "ike": pqike_ike,
        "esp": pqike_esp,
        "retransmit_timeout": retransmit_timeout,
        "retransmit_tries": retransmit_tries,
    }
    events = lab.workdir / "pqike.jsonl"
    if direction == PQIKE_INITIATES:
        daemon = lab.start_strongswan("right", **sw)
        config = write_pqike_config(lab.workdir / "left.toml", lab, "left", **pq)
        extra = ("--timeout", f"{WAIT:g}", *steps, "--stay", f"{stay:g}")
        proc: PqikeInitiator | PqikeResponder = PqikeInitiator(
            lab, "left", config, events, extra=extra
        ).start()
    else:
        config = write_pqike_config(lab.workdir / "left.toml", lab, "left", **pq)
        proc = PqikeResponder(lab, "left", config, events).start()
        daemon = lab.start_strongswan("right", **sw)
    pair = Pair(lab, direction, daemon, proc)
    if direction == STRONGSWAN_INITIATES:
        try:
            daemon.initiate(timeout=WAIT)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{pair.diagnose()}") from exc
    pair.wait(lambda ev: bool(kinds(ev, "child_sa_established")), "the first Child SA")
    return pair


def kinds(events: list[dict], kind: str, **fields) -> list[dict]:
    """The records of ``kind`` whose fields have the given values."""
    return [
        e for e in events if e["event"] == kind and all(e.get(k) == v for k, v in fields.items())
    ]


def pqike_child_spis(record: dict) -> tuple[str, str]:
    """(inbound, outbound) ESP SPI of pqike's Child SA record."""
    if record["initiated"]:
        return record["child_spi_i"], record["child_spi_r"]
    return record["child_spi_r"], record["child_spi_i"]


def live_children(events: list[dict]) -> set[tuple[str, str]]:
    """pqike's installed Child SAs as (inbound, outbound) SPIs, from its event log."""
    up = {pqike_child_spis(e) for e in kinds(events, "child_sa_established")}
    gone = {(e["child_spi_in"], e["child_spi_out"]) for e in kinds(events, "child_sa_deleted")}
    return up - gone


def current_ike_spis(events: list[dict]) -> tuple[str, str]:
    """The IKE SPIs pqike uses now: the first SA's, or the last rekey's."""
    last = [e for e in events if e["event"] in ("ike_sa_established", "ike_sa_rekeyed")][-1]
    return last["spi_i"], last["spi_r"]


def charon_view(sas) -> tuple[tuple[str, str] | None, set[tuple[str, str]]]:
    """charon's established IKE SA SPIs and its installed Child SAs as pqike sees them:
    (pqike's inbound, pqike's outbound) = (charon's outbound, charon's inbound)."""
    up = [sa for sa in sas if sa.state == "ESTABLISHED"]
    if len(up) != 1:
        return None, set()
    children = {
        (c.raw["spi-out"], c.raw["spi-in"]) for c in up[0].children if c.state == "INSTALLED"
    }
    return (up[0].spi_i, up[0].spi_r), children


def assert_same_state(pair: Pair, *, children: int | None = None) -> None:
    """Both sides hold the same one IKE SA and the same installed Child SAs (waited for:
    the peer's Delete of a replaced SA may still be on its way)."""

    def agree(sas) -> bool:
        events = pair.events()
        ike, installed = charon_view(sas)
        mine = live_children(events)
        return (
            ike == current_ike_spis(events)
            and installed == mine
            and (children is None or len(mine) == children)
        )

    pair.wait_charon(agree, f"the IKE SA and Child SAs pqike has: {pair.events()[-3:]}")


def finish(pair: Pair) -> list[dict]:
    """Stop pqike (SIGTERM: it deletes the IKE SA, after an exchange still in flight)
    and wait until charon has no IKE SA left; pqike's whole event log. Keys compare
    best after this: no rekey can be half done on one side only."""
    pair.pqike.stop()
    pair.wait_charon(lambda sas: not sas, "the IKE SA deleted by pqike")
    events = pair.events()
    assert kinds(events, "ike_sa_deleted", by_peer=False), pair.diagnose()
    return events


def assert_same_keys(pair: Pair, *, redundant_ike: int = 0) -> None:
    """Every SA's keys are identical on both sides (see the module docstring).

    ``redundant_ike``: IKE SAs made by the losing side of an IKE SA rekey collision
    (RFC 7296 2.8.2), which charon logs and pqike, deleting or dropping them, does not.
    """
    events, log = pair.events(), pair.charon.log()
    # Child SAs by ESP SPIs: charon's inbound is pqike's outbound.
    charon_children = {(c.spi_out, c.spi_in): c.keys for c in strongswan_child_key_sets(log)}
    pqike_children = {pqike_child_spis(e): e["keys"] for e in kinds(events, "child_sa_established")}
    assert pqike_children, events
    assert pqike_children == charon_children
    # IKE SAs: the first one and every rekey's, in the order charon made them.
    charon_ike = [s.keys for s in strongswan_ike_key_sets(log)]
    pqike_ike = [
        e["keys"] for e in events if e["event"] in ("ike_sa_established", "ike_sa_rekeyed")
    ]
    assert all(keys in charon_ike for keys in pqike_ike), (pqike_ike, charon_ike)
    assert len(charon_ike) == len(pqike_ike) + redundant_ike


def assert_clean(pair: Pair, *, allowed: tuple[str, ...] = ()) -> None:
    """No failure on either side (``allowed``: charon lines the case expects)."""
    events = pair.events()
    assert not kinds(events, "ike_sa_failed"), events
    assert not kinds(events, "child_sa_failed"), events
    errors = [
        line for line in charon_errors(pair.charon.log()) if not any(a in line for a in allowed)
    ]
    assert errors == [], errors


def exchanges(events: list[dict], exchange: str, **fields) -> list[dict]:
    return [m for m in kinds(events, "message", exchange=exchange, **fields)]


# ---------------------------------------------------------------------------
# Child SA rekey: PFS with x25519 and one ADDKE round in IKE_FOLLOWUP_KE


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_child_sa_rekeys_with_pfs_and_an_additional_ml_kem_exchange(strongswan, direction):
    with Lab(prefix=PREFIX) as lab:
        # pqike rekeys first (a step, or its own 2 s lifetime as a responder), then charon.
        pair = start_pair(
            lab,
            direction,
            steps=("--rekey", "child") if direction == PQIKE_INITIATES else (),
            pqike_esp=None if direction == PQIKE_INITIATES else {"rekey_time": 2, "rand_time": 0},
        )
        ev = pair.wait(
            lambda ev: kinds(ev, "child_sa_established", purpose="rekey_child", initiated=True),
            "its own Child SA rekey",
        )
        assert_same_state(pair, children=1)
        pair.charon.rekey_child()
        pair.wait(
            lambda ev: kinds(ev, "child_sa_established", purpose="rekey_child", initiated=False),
            "charon's Child SA rekey",
        )
        assert_same_state(pair, children=1)
        ev = finish(pair)
        assert_same_keys(pair)
        assert_clean(pair)

    rekeys = kinds(ev, "child_sa_established", purpose="rekey_child")
    assert {r["suite"] for r in rekeys} == {"aes256gcm16-x25519-noesn-ke1_mlkem768"}
    assert {r["key_exchanges"] for r in rekeys} == {2}
    assert all(r["rekeyed_spi"] for r in rekeys)
    # RFC 9370 2.2.4: one IKE_FOLLOWUP_KE exchange per rekey, each way once.
    followups = exchanges(ev, "IKE_FOLLOWUP_KE", response=False)
    assert {m["direction"] for m in followups[:2]} == {"sent", "received"}
    # The replaced Child SAs were deleted (RFC 7296 2.8): the first one, then pqike's.
    assert len(kinds(ev, "child_sa_deleted")) >= 2


# ---------------------------------------------------------------------------
# IKE SA rekey with one and two additional key exchanges


@pytest.mark.parametrize("proposal", [HYBRID, TWO_ROUNDS], ids=["one-round", "two-rounds"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_ike_sa_rekeys_with_additional_key_exchanges(strongswan, direction, proposal):
    rounds = proposal.count("-ke")
    with Lab(prefix=PREFIX) as lab:
        pair = start_pair(
            lab,
            direction,
            ike=proposal,
            steps=("--rekey", "ike") if direction == PQIKE_INITIATES else (),
            pqike_ike=None if direction == PQIKE_INITIATES else {"rekey_time": 2, "rand_time": 0},
        )
        pair.wait(lambda ev: kinds(ev, "ike_sa_rekeyed", initiated=True), "its IKE SA rekey")
        assert_same_state(pair, children=1)
        pair.charon.rekey_ike()
        pair.wait(lambda ev: kinds(ev, "ike_sa_rekeyed", initiated=False), "charon's IKE SA rekey")
        assert_same_state(pair, children=1)
        sas = pair.charon.list_sas()
        ev = finish(pair)
        assert_same_keys(pair)
        assert_clean(pair)

    (sa,) = [s for s in sas if s.state == "ESTABLISHED"]
    rekeys = kinds(ev, "ike_sa_rekeyed")[:2]
    assert {r["suite"] for r in rekeys} == {proposal}
    assert {r["key_exchanges"] for r in rekeys} == {1 + rounds}
    assert len(sa.algorithms.additional_ke) == rounds
    # Each rekey: one IKE_FOLLOWUP_KE per round, then the old IKE SA's Delete.
    assert len(exchanges(ev, "IKE_FOLLOWUP_KE", response=False)) >= 2 * rounds
    first, second = rekeys
    assert (second["old_spi_i"], second["old_spi_r"]) == (first["spi_i"], first["spi_r"])
    assert len({(e["spi_i"], e["spi_r"]) for e in rekeys}) == 2


# ---------------------------------------------------------------------------
# An additional round selected as NONE: no IKE_FOLLOWUP_KE at all


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_an_optional_round_the_peer_does_not_want_runs_no_followup_exchange(strongswan, direction):
    # The side that rekeys offers ML-KEM in ADDKE1 or NONE; the other knows only x25519.
    optional_ike = "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none"
    optional_esp = "aes256gcm16-x25519-ke1_mlkem768-ke1_none"
    plain_ike, plain_esp = "aes256gcm16-prfsha384-x25519", "aes256gcm16-x25519"
    pqike_rekeys = direction == PQIKE_INITIATES
    with Lab(prefix=PREFIX) as lab:
        pair = start_pair(
            lab,
            direction,
            ike=optional_ike if pqike_rekeys else plain_ike,
            esp=optional_esp if pqike_rekeys else plain_esp,
            sw_ike=plain_ike if pqike_rekeys else optional_ike,
            sw_esp=plain_esp if pqike_rekeys else optional_esp,
            steps=("--rekey", "child", "--rekey", "ike") if pqike_rekeys else (),
        )
        if not pqike_rekeys:
            pair.charon.rekey_child()
            pair.charon.rekey_ike()
        ev = pair.wait(
            lambda ev: (
                kinds(ev, "ike_sa_rekeyed")
                and kinds(ev, "child_sa_established", purpose="rekey_child")
            ),
            "a Child SA and an IKE SA rekey",
        )
        assert_same_state(pair, children=1)
        ev = finish(pair)
        assert_same_keys(pair)
        assert_clean(pair)

    assert exchanges(ev, "IKE_FOLLOWUP_KE") == []
    (child,) = kinds(ev, "child_sa_established", purpose="rekey_child")
    (ike,) = kinds(ev, "ike_sa_rekeyed")
    assert (child["suite"], child["key_exchanges"]) == ("aes256gcm16-x25519-noesn", 1)
    assert (ike["suite"], ike["key_exchanges"]) == (plain_ike, 1)
    assert child["initiated"] == ike["initiated"] == pqike_rekeys


# ---------------------------------------------------------------------------
# A second Child SA; Child SA and IKE SA Deletes from each side


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_a_second_child_sa_then_each_side_deletes_one(strongswan, direction):
    pqike_first = direction == PQIKE_INITIATES
    with Lab(prefix=PREFIX) as lab:
        # pqike makes the second Child SA and deletes the newest Child SA as an
        # initiator; as a responder its 3 s hard lifetime (no rekey) deletes the first.
        pair = start_pair(
            lab,
            direction,
            steps=("--new-child", "1", "--delete-child") if pqike_first else (),
            pqike_esp=None if pqike_first else {"rekey_time": 0, "life_time": 3},
        )
        if pqike_first:
            ev = pair.wait(
                lambda ev: kinds(ev, "child_sa_deleted", by_peer=False), "its Child SA Delete"
            )
            assert_same_state(pair, children=1)
            pair.charon.initiate_child("child2")
            pair.wait(
                lambda ev: kinds(ev, "child_sa_established", purpose="new_child", initiated=False),
                "charon's second Child SA",
            )
            assert_same_state(pair, children=2)
            pair.charon.terminate_child("child2")
        else:
            pair.charon.initiate_child("child2")
            pair.wait(
                lambda ev: kinds(ev, "child_sa_established", purpose="new_child"),
                "charon's second Child SA",
            )
            pair.charon.terminate_child("child2")
        ev = pair.wait(
            lambda ev: kinds(ev, "child_sa_deleted", by_peer=True), "charon's Child SA Delete"
        )
        if not pqike_first:
            ev = pair.wait(
                lambda ev: kinds(ev, "child_sa_deleted", by_peer=False, reason="hard lifetime"),
                "the first Child SA's hard lifetime",
            )
        assert_same_state(pair, children=1 if pqike_first else 0)
        ev = finish(pair)
        assert_same_keys(pair)
        assert_clean(pair)

    new = kinds(ev, "child_sa_established", purpose="new_child")
    assert len(new) == (2 if pqike_first else 1)
    assert all(n["key_exchanges"] == 2 for n in new)  # PFS + ML-KEM for every new one
    deleted = kinds(ev, "child_sa_deleted")
    assert {d["by_peer"] for d in deleted} == {True, False}


@pytest.mark.parametrize("deleter", ["pqike", "strongswan"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_either_side_deletes_the_ike_sa(strongswan, direction, deleter):
    with Lab(prefix=PREFIX) as lab:
        pair = start_pair(lab, direction, steps=("--new-child", "1"))
        if direction == PQIKE_INITIATES:
            pair.wait(lambda ev: len(live_children(ev)) == 2, "its second Child SA")
        else:
            pair.charon.initiate_child("child2")
        assert_same_state(pair, children=2)
        if deleter == "strongswan":
            pair.charon.terminate_ike()
            ev = pair.wait(lambda ev: kinds(ev, "ike_sa_deleted"), "the IKE SA's Delete")
        else:
            pair.pqike.stop()  # SIGTERM: pqike deletes its SA before it exits
            ev = pair.events()
        sas = pair.wait_charon(lambda sas: not sas, "no IKE SA any more")
        log = pair.charon.log()
        assert_clean(pair)

    (deleted,) = kinds(ev, "ike_sa_deleted")
    assert deleted["by_peer"] == (deleter == "strongswan")
    # RFC 7296 1.4.1: the Child SAs went with it, on both sides.
    assert live_children(ev) == set()
    assert sas == []
    assert exchanges(ev, "INFORMATIONAL", payloads="SK{D}")
    if deleter == "pqike":
        assert "received DELETE for IKE_SA" in log
    else:
        assert "deleting IKE_SA" in log


# ---------------------------------------------------------------------------
# Liveness checks (dead peer detection)


@pytest.mark.parametrize("checker", ["pqike", "strongswan"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_each_side_checks_the_others_liveness(strongswan, direction, checker):
    with Lab(prefix=PREFIX) as lab:
        pair = start_pair(
            lab,
            direction,
            pqike_ike={"dpd_delay": 1} if checker == "pqike" else None,
            charon={"dpd_delay": "1s"} if checker == "strongswan" else None,
        )
        if checker == "pqike":
            ev = pair.wait(lambda ev: len(kinds(ev, "liveness_checked")) >= 2, "two checks")
        else:
            ev = pair.wait(
                lambda ev: len(exchanges(ev, "INFORMATIONAL", direction="received")) >= 2,
                "two liveness checks from charon",
            )
        assert_same_state(pair, children=1)
        log = pair.charon.log()
        ev = finish(pair)
        assert_clean(pair)

    empty = exchanges(ev, "INFORMATIONAL", payloads="SK{}")
    if checker == "pqike":
        assert [m["direction"] for m in empty[:2]] == ["sent", "received"]
        assert all(r["round_trip"] < 1.0 for r in kinds(ev, "liveness_checked"))
        assert "parsed INFORMATIONAL request" in log and "generating INFORMATIONAL response" in log
    else:
        assert [m["direction"] for m in empty[:2]] == ["received", "sent"]
        assert "generating INFORMATIONAL request" in log


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_pqike_declares_a_silent_peer_dead(strongswan, direction):
    with Lab(prefix=PREFIX) as lab:
        pair = start_pair(
            lab,
            direction,
            pqike_ike={"dpd_delay": 1},
            retransmit_timeout=0.5,
            retransmit_tries=2,
        )
        # Gone without a Delete, as a crashed peer (SIGTERM would delete its SAs).
        assert pair.charon.process is not None
        pair.charon.process.kill()
        ev = pair.wait(lambda ev: kinds(ev, "ike_sa_failed"), "the IKE SA's failure")

    (failed,) = kinds(ev, "ike_sa_failed")
    assert failed["notify"] is None
    assert "the peer is dead" in failed["reason"]
    assert len(exchanges(ev, "INFORMATIONAL", direction="sent", payloads="SK{}")) == 3


# ---------------------------------------------------------------------------
# Rekey collisions (RFC 7296 2.8.1, 2.8.2)


class Relay:
    """``python -m pqike.lab.relay`` in pqike's namespace: every datagram between the peers
    waits ``delay_ms`` each way, so both rekeys are under way before either arrives."""

    def __init__(self, lab: Lab, side: str, listen: str, target: str, delay_ms: int) -> None:
        argv = [
            sys.executable,
            "-m",
            "pqike.lab.relay",
            "--listen",
            listen,
            "--target",
            target,
            "--delay-ms",
            str(delay_ms),
        ]
        self.output = lab.workdir / "relay.out"
        with open(self.output, "wb") as out:
            self.process = lab.popen_in(side, argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT
        while "relaying" not in self.output.read_text():
            assert self.process.poll() is None and time.monotonic() < deadline, (
                self.output.read_text()
            )
            time.sleep(0.02)


@pytest.mark.parametrize("what", ["child", "ike"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_a_rekey_collision_leaves_one_sa_on_both_sides(strongswan, direction, what):
    """pqike's rekey (its 2 s lifetime) leaves; once its CREATE_CHILD_SA request is on the
    wire, charon rekeys the same SA. The relay holds each datagram 300 ms, so the two
    requests cross: both sides see the collision and settle it by the nonces."""
    # A long over_time / life_time: the hard lifetime must not end the SA while the
    # relay stretches the collision to a second or more.
    ike_lifetime = {"rekey_time": 2, "rand_time": 0, "over_time": 60}
    child_lifetime = {"rekey_time": 2, "rand_time": 0, "life_time": 60}
    ports = {"port": 15500, "port_nat_t": 15501}  # not 500: nobody floats (RFC 7296 2.23)
    with Lab(prefix=PREFIX) as lab:
        # The relay runs beside pqike: both peers send it what is meant for the other.
        pq_addr, sw_addr = lab.address("left"), lab.address("right")
        target = sw_addr if direction == PQIKE_INITIATES else pq_addr
        Relay(lab, "left", f"{pq_addr}:16500", f"{target}:15500", 300)
        pair = start_pair_via_relay(
            lab,
            direction,
            remote=pq_addr,
            remote_port=16500,
            charon={**ports, "remote_port": 16500},
            pqike_ike=ike_lifetime if what == "ike" else None,
            pqike_esp=child_lifetime if what == "child" else None,
        )
        exchange = "CREATE_CHILD_SA"
        pair.wait(
            lambda ev: exchanges(ev, exchange, direction="sent", response=False),
            "its rekey request",
        )
        if what == "ike":
            pair.charon.rekey_ike()
            pair.wait(lambda ev: kinds(ev, "ike_sa_rekeyed"), "the IKE SA rekey")
        else:
            pair.charon.rekey_child()
            pair.wait(
                lambda ev: kinds(ev, "child_sa_established", purpose="rekey_child"),
                "the Child SA rekey",
            )
        assert_same_state(pair, children=1)
        ev = finish(pair)
        assert_same_keys(pair)
        assert_clean(pair)
        log = pair.charon.log()

    # Both requests left before either arrived: each side answered the other's.
    requests = exchanges(ev, exchange)[:4]
    assert [(m["direction"], m["response"]) for m in requests] == [
        ("sent", False),
        ("received", False),
        ("sent", True),
        ("received", True),
    ], requests

    # RFC 9370 2.2.4: the nonces of the two CREATE_CHILD_SA exchanges decide at once;
    # the side with the lowest one stops before its IKE_FOLLOWUP_KE, so exactly one new
    # SA is made, on both sides, by the winner's rounds.
    kind = "IKE_SA" if what == "ike" else "CHILD_SA"
    assert f"{kind} rekey collision " in log, log[-3000:]
    won = f"{kind} rekey collision won" in log
    if what == "ike":
        (rekeyed,) = kinds(ev, "ike_sa_rekeyed")
        made = rekeyed
    else:
        (made,) = kinds(ev, "child_sa_established", purpose="rekey_child")
    assert made["initiated"] is not won
    followups = exchanges(ev, "IKE_FOLLOWUP_KE", response=False)
    assert {m["direction"] for m in followups} == {"received" if won else "sent"}


def start_pair_via_relay(
    lab: Lab, direction: str, *, remote: str, remote_port: int, charon: dict, **pqike
) -> Pair:
    """``start_pair`` with pqike behind the relay on the non-500 ports of ``charon``."""
    sw = {
        "ike_proposal": HYBRID,
        "esp_proposal": ESP_HYBRID,
        **{k: v for k, v in charon.items() if v},
    }
    pq = {
        "ike_proposal": HYBRID,
        "esp_proposal": ESP_HYBRID,
        "port": 15500,
        "nat_t_port": 15501,
        "remote": remote,
        "remote_port": remote_port,
        "ike": pqike.get("pqike_ike"),
        "esp": pqike.get("pqike_esp"),
    }
    events = lab.workdir / "pqike.jsonl"
    config = write_pqike_config(lab.workdir / "left.toml", lab, "left", **pq)
    if direction == PQIKE_INITIATES:
        daemon = lab.start_strongswan("right", **sw)
        extra = ("--timeout", f"{WAIT:g}", "--stay", "120")
        proc: PqikeInitiator | PqikeResponder = PqikeInitiator(
            lab, "left", config, events, extra=extra
        ).start()
    else:
        proc = PqikeResponder(lab, "left", config, events).start()
        daemon = lab.start_strongswan("right", **sw)
    pair = Pair(lab, direction, daemon, proc)
    if direction == STRONGSWAN_INITIATES:
        try:
            daemon.initiate(timeout=WAIT)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{pair.diagnose()}") from exc
    pair.wait(lambda ev: bool(kinds(ev, "child_sa_established")), "the first Child SA")
    return pair


# ---------------------------------------------------------------------------
# Many rekeys in a row


def _rekey_child_of(charon: StrongSwan, deadline: float) -> None:
    """``swanctl --rekey --child``, asked again while charon answers "no matching SAs":
    while charon rekeys its IKE SA (every second in this test) it moves the Child SA to
    the new IKE SA, and a rekey asked for in that instant finds none."""
    while True:
        try:
            charon.rekey_child()
            return
        except LabError as exc:
            if "no matching SAs" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_twenty_rekeys_in_a_row_lose_no_sa(strongswan, direction):
    """The IKE-initiating side rekeys until 20 rekeys are done, the other side answers;
    nothing fails, nothing is lost. pqike rekeys the IKE SA and the Child SA on 1 s
    lifetimes; charon rekeys the IKE SA on a 1 s lifetime and the Child SA when told
    (with the load-tester's fake kernel no Child SA lifetime ever expires in charon:
    strongSwan rekeys Child SAs on the kernel's expire events)."""

    def rekeys(ev):
        return kinds(ev, "ike_sa_rekeyed") + kinds(
            ev, "child_sa_established", purpose="rekey_child"
        )

    with Lab(prefix=PREFIX) as lab:
        if direction == PQIKE_INITIATES:
            pair = start_pair(
                lab,
                direction,
                pqike_ike={"rekey_time": 1, "rand_time": 0, "over_time": 10},
                pqike_esp={"rekey_time": 1, "rand_time": 0, "life_time": 10},
            )
            pair.wait(lambda ev: len(rekeys(ev)) >= 20, "20 rekeys", timeout=60)
        else:
            pair = start_pair(
                lab,
                direction,
                charon={"rekey_time": "1s", "over_time": "10s", "rand_time": "0"},
            )
            deadline = time.monotonic() + 60
            while len(rekeys(pair.events())) < 20 or not kinds(pair.events(), "ike_sa_rekeyed"):
                assert time.monotonic() < deadline, pair.diagnose()
                done = len(kinds(pair.events(), "child_sa_established", purpose="rekey_child"))
                _rekey_child_of(pair.charon, deadline)
                pair.wait(
                    lambda ev, n=done: (
                        len(kinds(ev, "child_sa_established", purpose="rekey_child")) > n
                    ),
                    "charon's Child SA rekey",
                )
        assert_same_state(pair, children=1)
        ev = finish(pair)
        assert_same_keys(pair)
        assert_clean(pair)

    assert {r["initiated"] for r in rekeys(ev)} == {direction == PQIKE_INITIATES}
    assert len(rekeys(ev)) >= 20
    assert kinds(ev, "ike_sa_rekeyed")
    assert kinds(ev, "child_sa_established", purpose="rekey_child")
