"""Write ``capture.json``: IKEv1 datagrams between two lab charons, as the relay logged them.

One main mode + quick mode handshake and one aggressive mode + quick mode handshake of the
``strongswan-ikev1`` pair (``pqike.lab.strongswan_pairs``), each followed by a Child SA
rekey (quick mode) and the IKE SA's deletion, so every exchange type the dissector names
is in it. Needs root and the lab's strongSwan build::

    sudo PQIKE_STRONGSWAN_CACHE=... .venv/bin/python tests/data/ikev1/capture.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pqike.interop.lab import ensure_strongswan
from pqike.lab import HandshakeCase, NetworkProfile, ProposalSpec
from pqike.lab.strongswan_pairs import StrongSwanPair

HERE = Path(__file__).resolve().parent
IKE = "aes256-sha384-x25519"
ESP = "aes256gcm16-x25519"


def main() -> None:
    install = ensure_strongswan(install=False)
    out: dict[str, object] = {
        "made_by": "tests/data/ikev1/capture.py",
        "strongswan": install.version(),
        "ike_proposal": IKE,
        "esp_proposal": ESP,
        "handshakes": {},
    }
    for mode in ("main", "aggressive"):
        pair = StrongSwanPair(
            "strongswan-ikev1",
            "strongswan",
            "strongswan",
            ikev1=True,
            prefix=f"pqxc{os.getpid()}",
        )
        try:
            case = HandshakeCase(
                ProposalSpec(mode, IKE, ESP, ikev1_mode=mode),
                NetworkProfile("lan"),
                seed=1,
                phases=("child",),
            )
            run = pair.run(case)
            if not run.established:
                raise SystemExit(f"{mode}: not established: {run.failure}")
            out["handshakes"][mode] = [  # type: ignore[index]
                {"sender": sender, "udp_payload": payload.hex()}
                for sender, payload in pair.last_datagrams
            ]
        finally:
            pair.close()
    (HERE / "capture.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
