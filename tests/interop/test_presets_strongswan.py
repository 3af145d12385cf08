"""The ``strongswan`` preset: pqike's datagrams are as long as strongSwan's, one by one.

For each proposal two charons set up an IKE SA in the lab and every datagram is
captured; then two pqike peers with the ``strongswan`` preset and the lab's setup
(addresses, identities, the interfaces' IPv6 addresses for MOBIKE, fragment size 1280)
run the same handshake in memory. The UDP payload lengths must be equal, datagram by
datagram. The charons run with ``send_certreq = no``: the CERTREQ they would otherwise
send names the load-tester plugin's test CA, which only this lab loads. Then a real
pqike peer (``pqike initiate`` / ``pqike respond`` with ``preset = "strongswan"`` in its
TOML) faces a charon in the lab, both ways: the capture must equal the charon pair's.
"""

from __future__ import annotations

import pytest

from pqike.handshake import drive_pair, make_config
from pqike.ike.sa import IkeSa
from pqike.interop.lab import IPV4_ADDRESSES, IPV6_ADDRESSES, Lab, ensure_strongswan
from pqike.interop.peer import (
    PqikeResponder,
    lab_unavailable,
    run_pqike_initiator,
    write_pqike_config,
)

pytestmark = pytest.mark.interop
_SKIP = lab_unavailable()
if _SKIP:
    pytestmark = [pytestmark, pytest.mark.skip(reason=_SKIP)]

PROPOSALS = (
    "aes256gcm16-prfsha384-x25519",
    "aes256gcm16-prfsha384-ecp256",
    "aes256gcm16-prfsha384-x25519-ke1_mlkem768",
    "aes256gcm16-prfsha384-x25519-ke1_mlkem1024",
    "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024",
)


def _sizes(capture) -> list[tuple[str, str, int]]:
    return [
        ("i" if d.from_original_initiator else "r", d.exchange or "", len(d.payload))
        for d in capture.datagrams()
        if d.ike_message is not None
    ]


def strongswan_sizes(proposal: str, pqike: str = "") -> list[tuple[str, str, int]]:
    """(sender, exchange, UDP payload bytes) of each IKE datagram of a charon pair, or,
    with ``pqike`` = ``left`` or ``right``, of a real pqike peer with the strongswan
    preset on that side facing a charon."""
    charon = {"ike_proposal": proposal, "esp_proposal": "aes256gcm16", "send_certreq": False}
    with Lab() as lab:
        capture = lab.capture("left")
        if pqike:
            config = write_pqike_config(
                lab.workdir / f"{pqike}.toml",
                lab,
                pqike,
                ike_proposal=proposal,
                ike={"preset": "strongswan"},
            )
            # [ike] additional_addresses: the interface's IPv6 address, as charon finds.
            text = config.read_text().replace(
                "[ike]\n", f'[ike]\nadditional_addresses = ["{IPV6_ADDRESSES[pqike]}"]\n', 1
            )
            config.write_text(text)
        if pqike == "left":
            lab.start_strongswan("right", **charon)
            run = run_pqike_initiator(lab, "left", config, lab.workdir / "left.jsonl")
            assert run.returncode == 0, run.stdout + run.stderr
        elif pqike == "right":
            responder = PqikeResponder(lab, "right", config, lab.workdir / "right.jsonl")
            responder.start()
            try:
                lab.start_strongswan("left", **charon).initiate("conn", child="child", timeout=20)
                capture.stop()  # before pqike stops: it deletes its IKE SA then
            finally:
                responder.stop()
        else:
            sides = {side: lab.start_strongswan(side, **charon) for side in ("left", "right")}
            sides["left"].initiate("conn", child="child", timeout=20)
        if pqike != "right":
            capture.stop()
        return _sizes(capture)


def pqike_sizes(proposal: str) -> list[tuple[str, str, int]]:
    """The same for two pqike peers with the strongswan preset and the lab's setup."""
    ids = {side: f"{side}.pqike.test" for side in ("left", "right")}

    def config(side: str, peer: str, **extra):
        return make_config(
            proposal,
            local_id=ids[side],
            psk=b"pqike-interop-lab-psk",
            preset="strongswan",
            fragment_size=1280,
            additional_addresses=(IPV6_ADDRESSES[side],),
            **extra,
        )

    left = IkeSa(
        config("left", "right", remote_id=ids["right"]),
        is_initiator=True,
        local=(IPV4_ADDRESSES["left"], 500),
        remote=(IPV4_ADDRESSES["right"], 500),
    )
    right = IkeSa(
        config("right", "left"),
        is_initiator=False,
        local=(IPV4_ADDRESSES["right"], 500),
        remote=(IPV4_ADDRESSES["left"], 500),
    )
    result = drive_pair(left, right)
    assert result.established
    return [
        ("i" if d.sender == "initiator" else "r", d.exchange, d.udp_bytes)
        for d in result.trace.datagrams
    ]


def table(proposal: str, theirs: list, ours: list) -> str:
    rows = [f"{proposal}: {'':2} {'exchange':<17} {'strongSwan':>10} {'pqike':>6}"]
    for k in range(max(len(theirs), len(ours))):
        t = theirs[k] if k < len(theirs) else ("-", "-", "-")
        o = ours[k] if k < len(ours) else ("-", "-", "-")
        rows.append(f"  {t[0]:<2} {t[1]:<17} {t[2]!s:>10} {o[2]!s:>6}")
    return "\n".join(rows)


@pytest.fixture(scope="module")
def strongswan():
    return ensure_strongswan(install=True)


@pytest.mark.parametrize("proposal", PROPOSALS)
def test_strongswan_preset_sends_datagrams_as_long_as_strongswans(strongswan, proposal):
    theirs, ours = strongswan_sizes(proposal), pqike_sizes(proposal)
    print(f"\n{strongswan.version()}\n{table(proposal, theirs, ours)}")
    assert ours == theirs, table(proposal, theirs, ours)


@pytest.mark.parametrize("pqike", ["left", "right"], ids=["pqike-initiates", "pqike-responds"])
@pytest.mark.parametrize("proposal", PROPOSALS)
def test_a_real_pqike_peer_with_the_preset_sends_what_strongswan_sends(
    strongswan, proposal, pqike
):
    theirs, mixed = strongswan_sizes(proposal), strongswan_sizes(proposal, pqike)
    assert mixed == theirs, table(proposal, theirs, mixed)
