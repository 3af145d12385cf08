"""ML-DSA certificates (draft-ietf-ipsecme-ikev2-pqc-auth) between ``pqike respond`` and
``pqike initiate`` processes over loopback UDP, configured by their ``[auth]`` sections.

The refusals run a real ``pqike respond`` against an initiator in this process whose
credential signs wrongly: a key wrapper that flips a bit of every signature, a P-256
key behind an ML-DSA-65 certificate (an ECDSA AUTH for an ML-DSA key), and an ML-DSA-65
key presented as ML-DSA-44 (so its AUTH carries the ML-DSA-44 AlgorithmIdentifier over
a signature that would otherwise verify). The responder must answer each with
AUTHENTICATION_FAILED and say why in its event log.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import mldsa

from pqike.io.config import load_peer_config
from pqike.io.peer import initiate
from pqike.pki import generate_key, make_pki

HYBRID = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"
INI, RES = "initiator.pqike.example", "responder.pqike.example"
SETS = ["mldsa44", "mldsa65", "mldsa87"]


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("pkis")
    for kind in [*SETS, "p256"]:
        make_pki(base / kind, [INI, RES], key_type=kind)
    return base


def peer_toml(path: Path, *, responder: bool, auth: dict, remote_port: int = 0) -> Path:
    ident, other = (RES, INI) if responder else (INI, RES)
    lines = [
        "[peer]",
        'local = "127.0.0.1"',
        "port = 0",
        "nat_t_port = 0",
        f'local_id = "{ident}"',
        f'remote_id = "{other}"',
    ]
    if not responder:
        lines += ['remote = "127.0.0.1"', f"remote_port = {remote_port}"]
    lines += ["[ike]", f'proposals = "{HYBRID}"', "fragment_size = 1280"]
    lines += ["[retransmit]", "timeout = 0.5", "[auth]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in auth.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def auth_of(pki_dir: Path, kind: str, ident: str, *cas: str) -> dict:
    d = pki_dir / kind
    return {
        "key": str(d / f"{ident}.key"),
        "certificate": str(d / f"{ident}.pem"),
        "cacerts": [str(pki_dir / ca / "ca.pem") for ca in (cas or (kind,))],
    }


class Responder:
    """``pqike respond --events`` in the background; ``port`` from its first line."""

    def __init__(self, config: Path, events: Path) -> None:
        self.events_path = events
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pqike.cli",
                "respond",
                "-c",
                str(config),
                "--events",
                str(events),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first = self.proc.stdout.readline()
        assert first.startswith("listening on 127.0.0.1:"), first + self.proc.stderr.read()
        self.port = int(first.split(",")[0].rsplit(":", 1)[1])

    def stop(self) -> list[dict]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return [json.loads(line) for line in self.events_path.read_text().splitlines()]


@pytest.mark.parametrize("kind", SETS)
def test_ml_dsa_between_two_pqike_processes(pki_dir, tmp_path, kind):
    res_conf = peer_toml(tmp_path / "r.toml", responder=True, auth=auth_of(pki_dir, kind, RES))
    responder = Responder(res_conf, tmp_path / "r.jsonl")
    try:
        ini_conf = peer_toml(
            tmp_path / "i.toml",
            responder=False,
            auth=auth_of(pki_dir, kind, INI),
            remote_port=responder.port,
        )
        run = subprocess.run(
            [
                *(sys.executable, "-m", "pqike.cli", "initiate", "-c", str(ini_conf), "--json"),
                *("--events", str(tmp_path / "i.jsonl"), "--timeout", "20"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        res_events = responder.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout)
    assert result["established"] and result["suite"] == HYBRID
    # Each IKE_AUTH carries an ML-DSA chain of two certificates: fragmented at 1280.
    auth = [m for m in result["messages"] if m["exchange"] == "IKE_AUTH"]
    assert len(auth) == 2 and all(m["fragments"] > 1 for m in auth), auth
    ini_events = [json.loads(x) for x in (tmp_path / "i.jsonl").read_text().splitlines()]
    up_i = next(e for e in ini_events if e["event"] == "ike_sa_established")
    up_r = next(e for e in res_events if e["event"] == "ike_sa_established")
    assert up_i["keys"] == up_r["keys"]
    assert (up_i["remote_id"], up_r["remote_id"]) == (RES, INI)


class _Wrapped:
    """Delegates everything but ``sign`` to a real ML-DSA key."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def public_key(self):
        return self.inner.public_key()

    def private_bytes(self, *a, **k):
        return self.inner.private_bytes(*a, **k)

    def private_bytes_raw(self):
        return self.inner.private_bytes_raw()

    def sign_mu(self, mu):
        return self.inner.sign_mu(mu)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


class TamperingKey(_Wrapped, mldsa.MLDSA65PrivateKey):
    """Signs with the real key, then flips the last bit of the signature."""

    def sign(self, data, context=None):
        good = self.inner.sign(data)
        return good[:-1] + bytes((good[-1] ^ 1,))


class Mislabelled(_Wrapped, mldsa.MLDSA44PrivateKey):
    """An ML-DSA-65 key that says it is ML-DSA-44: the AUTH names id-ml-dsa-44."""

    def sign(self, data, context=None):
        return self.inner.sign(data)


def _run_bad_initiator(tmp_path, pki_dir, port, make_key):
    conf = peer_toml(
        tmp_path / "i.toml",
        responder=False,
        auth=auth_of(pki_dir, "mldsa65", INI),
        remote_port=port,
    )
    peer = load_peer_config(conf)
    cred = peer.ike.credential
    assert cred is not None
    # Past Credential's check that the key belongs to the certificate, on purpose.
    object.__setattr__(cred, "key", make_key(cred.key))
    return asyncio.run(initiate(peer, timeout=15))


@pytest.mark.parametrize(
    ("case", "make_key", "reason"),
    [
        (
            "tampered",
            TamperingKey,
            "the initiator's AUTH payload does not verify: the signature does not verify",
        ),
        (
            "wrong-key-type",
            lambda key: generate_key("p256"),
            "the AlgorithmIdentifier names ecdsa-with-sha256, the certificate has a mldsa65 key",
        ),
        (
            "mismatched-algorithm-identifier",
            Mislabelled,
            "the AlgorithmIdentifier names mldsa44, the certificate has a mldsa65 key",
        ),
    ],
)
def test_bad_ml_dsa_auth_is_refused_over_udp(pki_dir, tmp_path, case, make_key, reason):
    # The responder trusts ML-DSA-44 and P-256 CAs too: it then announces those schemes
    # (RFC 9593), so the initiator does not hold back the mislabelled AUTH itself.
    res_auth = auth_of(pki_dir, "mldsa65", RES, "mldsa65", "mldsa44", "p256")
    responder = Responder(
        peer_toml(tmp_path / "r.toml", responder=True, auth=res_auth), tmp_path / "r.jsonl"
    )
    try:
        result = _run_bad_initiator(tmp_path, pki_dir, responder.port, make_key)
    finally:
        res_events = responder.stop()
    assert not result.established
    assert "AUTHENTICATION_FAILED" in (result.failure or ""), result.failure
    failed = [e for e in res_events if e["event"] == "ike_sa_failed"]
    assert [e["notify_name"] for e in failed] == ["AUTHENTICATION_FAILED"], res_events
    assert reason in failed[0]["reason"], failed[0]["reason"]
    assert not [e for e in res_events if e["event"] == "ike_sa_established"]
