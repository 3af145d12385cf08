"""The decoder against tshark where tshark can decode (IKE_SA_INIT, and IKE_AUTH with
Wireshark's key table of the final keys): the same payloads with the same lengths."""

from __future__ import annotations

import shutil
import subprocess

from pqike.crypto.keys import IkeKeys
from pqike.lab.dissect import decode_files
from pqike.pcap import ikev2_decryption_line
from pqike.proposal import NegotiatedSuite
from pqike.secrets import read_transcript

from .test_decode import _capture

# Substructures tshark lists among the payload types: proposals and transforms (RFC 7296 3.3).
_SUBSTRUCTURES = {2, 3}


def test_same_payloads_and_lengths_as_tshark(tmp_path):
    tshark = shutil.which("tshark")
    assert tshark is not None, "tshark is part of the test tools (./run test installs it)"
    pcap, secrets, result = _capture(tmp_path, then=())
    final = [r for r in read_transcript(secrets) if r.kind == "IKE_KEYS"][-1]
    keys = IkeKeys(
        *(final.bytes_(n) for n in ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"))
    )
    suite = result.suite
    assert isinstance(suite, NegotiatedSuite)
    line = ikev2_decryption_line(final.bytes_("spi_i"), final.bytes_("spi_r"), suite, keys)
    out = subprocess.run(
        [
            tshark,
            "-r",
            str(pcap),
            "-o",
            f"uat:ikev2_decryption_table:{line}",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "isakmp.exchangetype",
            "-e",
            "isakmp.typepayload",
            "-e",
            "isakmp.payloadlength",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    theirs = {}
    for row in out.splitlines():
        frame, exchange, types, lengths = row.split("\t")
        if int(exchange) not in (34, 35):  # IKE_SA_INIT, IKE_AUTH
            continue
        pairs = [
            (int(t), int(n))
            for t, n in zip(types.split(","), lengths.split(","), strict=True)
            if int(t) not in _SUBSTRUCTURES
        ]
        theirs[int(frame)] = pairs
    decoded = decode_files(str(pcap), [str(secrets)])
    ours = {}
    for m in decoded.messages:
        if m.exchange not in ("IKE_SA_INIT", "IKE_AUTH"):
            continue
        pairs = []
        for node in m.payloads:
            pairs.append((node.payload_type, node.length))
            pairs += [(c.payload_type, c.length) for c in node.children if c.payload_type]
        ours[m.frames[0]] = pairs
    assert len(ours) == 4
    assert ours == theirs
