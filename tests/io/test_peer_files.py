"""Issue 10: files holding keys are private, file errors name the file, and the
initiator reports the path its IKE SA really took (NAT-T included)."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from pqike.errors import ConfigurationError
from pqike.files import open_private
from pqike.io.config import parse_peer_config
from pqike.io.peer import InitiatorResult, initiate, serve
from pqike.trace import Trace


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_key_files_are_created_0600_even_over_an_existing_0644_file(tmp_path):
    fresh = tmp_path / "fresh.keys"
    with open_private(fresh, "keylog") as f:
        f.write("x")
    assert mode_of(fresh) == 0o600
    old = tmp_path / "old.keys"
    old.write_text("old")
    old.chmod(0o644)
    with open_private(old, "events") as f:
        f.write("new")
    assert mode_of(old) == 0o600 and old.read_text() == "new"


def test_a_file_that_cannot_be_written_is_named_not_called_a_network_error(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        open_private(tmp_path / "missing" / "k", "keylog")
    assert str(info.value) == (
        f"keylog file {tmp_path / 'missing' / 'k'}: cannot be written (No such file or directory)"
    )
    with pytest.raises(ConfigurationError) as info:
        open_private(tmp_path, "pcap", binary=True, private=False)
    assert str(info.value) == f"pcap file {tmp_path}: cannot be written (Is a directory)"
    assert info.value.field == "pcap"


def result(**kw) -> InitiatorResult:
    base = {
        "established": True,
        "failure": None,
        "ike": None,
        "child": None,
        "trace": Trace(ipv6=False),
        "events": [],
        "local": ("192.0.2.1", 500),
        "remote": ("192.0.2.2", 500),
        "elapsed": 0.1,
    }
    return InitiatorResult(**{**base, **kw})


def test_the_path_shows_where_ike_sa_init_went_and_where_the_sa_moved():
    assert result().path() == "192.0.2.1:500 -> 192.0.2.2:500"
    moved = result(final_local=("192.0.2.1", 4500), final_remote=("192.0.2.2", 4500))
    assert moved.path() == "192.0.2.1:500 -> 192.0.2.2:500, then 192.0.2.1:4500 -> 192.0.2.2:4500"
    summary = moved.summary()
    assert summary["local"] == ["192.0.2.1", 500] and summary["final_local"] == ["192.0.2.1", 4500]


PEER = """
[peer]
local = "{local}"
remote = "{remote}"
local_id = "{me}.pqike.example"
psk = "pqike-demo-psk"
[ike]
proposals = "aes256gcm16-prfsha384-x25519"
force_nat_t = true
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="ports 500 and 4500 need root")
def test_with_force_nat_t_the_initiator_reports_both_legs_of_its_path():
    ini_peer = parse_peer_config(PEER.format(local="127.0.0.1", remote="127.0.0.2", me="i"))
    res_peer = parse_peer_config(PEER.format(local="127.0.0.2", remote="127.0.0.1", me="r"))

    async def main():
        stop = asyncio.Event()
        bound = asyncio.Event()
        server = asyncio.create_task(
            serve(res_peer, stop, log=lambda line: None, ready=lambda udp: bound.set())
        )
        await asyncio.wait_for(bound.wait(), 10)
        try:
            return await initiate(ini_peer, timeout=10)
        finally:
            stop.set()
            await server

    outcome = asyncio.run(main())
    assert outcome.established, outcome.failure
    assert outcome.path() == (
        "127.0.0.1:500 -> 127.0.0.2:500, then 127.0.0.1:4500 -> 127.0.0.2:4500"
    )
