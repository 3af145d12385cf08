"""``python -m pqike.interop up|down|run``: the strongSwan lab from the command line.

- ``up`` brings a lab up with a charon on each side (or on one side, the other side
  getting a pqike configuration) and leaves it running, printing the commands to use it;
- ``down`` removes every lab with a prefix (leftovers of crashed runs);
- ``run`` runs one strongSwan <-> strongSwan case, captured, and prints its datagrams.

It sits above :mod:`pqike.interop.lab` and :mod:`pqike.interop.peer`, which do not
import it (nor the lab the peer).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .lab import (
    DEFAULT_PREFIX,
    IPV4_ADDRESSES,
    IPV6_ADDRESSES,
    KERNEL_BACKENDS,
    SIDES,
    Datagram,
    Lab,
    LabError,
    StrongSwan,
    StrongSwanConfig,
    cleanup,
    datagram_sequence,
)
from .peer import write_pqike_config

DESCRIPTION = "The strongSwan 6 interop lab: two network namespaces, one charon in each."


def _config_from_args(args: argparse.Namespace) -> StrongSwanConfig:
    return StrongSwanConfig(
        ike_proposal=args.ike_proposal,
        esp_proposal=args.esp_proposal,
        psk=args.psk,
        port=args.port,
        port_nat_t=args.port_nat_t,
        fragment_size=args.fragment_size,
        kernel=args.kernel,
        send_certreq=not args.no_certreq,
    )


def _add_config_args(p: argparse.ArgumentParser) -> None:
    d = StrongSwanConfig()
    p.add_argument("--ipv6", action="store_true", help="talk over IPv6 (2001:db8::1/2)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="name prefix (default %(default)s)")
    p.add_argument("--ike-proposal", default=d.ike_proposal)
    p.add_argument("--esp-proposal", default=d.esp_proposal)
    p.add_argument("--psk", default=d.psk)
    p.add_argument("--port", type=int, default=d.port, help="IKE port of both daemons")
    p.add_argument("--port-nat-t", type=int, default=d.port_nat_t)
    p.add_argument("--fragment-size", type=int, default=d.fragment_size)
    p.add_argument("--kernel", choices=KERNEL_BACKENDS, default=d.kernel)
    p.add_argument("--no-certreq", action="store_true", help="send_certreq = no")


def _cmd_up(args: argparse.Namespace) -> int:
    lab = Lab(ipv6=args.ipv6, prefix=args.prefix, keep_workdir=True)
    try:
        lab.up()
        config = _config_from_args(args)
        sides: tuple[str, ...] = () if args.no_strongswan else SIDES
        if args.strongswan_side and not args.no_strongswan:
            sides = (args.strongswan_side,)
        daemons = [lab.start_strongswan(s, config) for s in sides]
        pqike_side = lab.peer_of(sides[0]) if len(sides) == 1 else None
        pqike_config = None
        if pqike_side is not None:
            # The other side is for a pqike peer: the same settings as pqike TOML.
            pqike_config = write_pqike_config(
                lab.workdir / pqike_side / "pqike.toml",
                lab,
                pqike_side,
                ike_proposal=config.ike_proposal,
                esp_proposal=config.esp_proposal,
                psk=config.psk,
                fragment_size=config.fragment_size,
                port=config.port,
                nat_t_port=config.port_nat_t,
            )
    except BaseException:
        lab.down()
        raise
    print(f"lab {lab.id} is up (workdir {lab.workdir})")
    for side in SIDES:
        v4, v6 = IPV4_ADDRESSES[side], IPV6_ADDRESSES[side]
        print(f"  {side:5}  netns {lab.namespaces[side]}  {v4}  {v6}")
    for d in daemons:
        print(f"\n# {d.side}: charon pid {d.process.pid if d.process else '?'}, log {d.log_path}")
        env = f"STRONGSWAN_CONF={d.strongswan_conf}"
        print(f"{env} {d.install.swanctl} --list-sas --uri {d.vici_uri}")
    if daemons:
        d = daemons[0]
        print(f"\n# initiate from {d.side}:")
        print(
            f"STRONGSWAN_CONF={d.strongswan_conf} {d.install.swanctl} --initiate "
            f"--ike {d.config.conn} --child {d.config.child} --uri {d.vici_uri}"
        )
    if pqike_side is not None and pqike_config is not None:
        # The pqike script beside this interpreter (a venv's bin/), else the one on PATH.
        venv_pqike = Path(sys.executable).with_name("pqike")
        pqike = str(venv_pqike) if venv_pqike.exists() else "pqike"
        ns = " ".join(lab.ns_prefix(pqike_side))
        out = lab.workdir / pqike_side
        print(f"\n# {pqike_side}: pqike, configuration {pqike_config}")
        print(
            f"{ns} {pqike} initiate --config {pqike_config} --pcap {out}/pqike.pcap "
            f"--keylog {out}/pqike.keys"
        )
        print(f"{ns} {pqike} respond --config {pqike_config} --events {out}/events.jsonl")
    print(f"\n# tear down:\npython -m pqike.interop down --prefix {args.prefix}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    removed = cleanup(args.prefix, keep_workdirs=args.keep_workdirs)
    print(f"removed {len(removed)} namespace(s)" + (": " + " ".join(removed) if removed else ""))
    return 0


def _save_run(
    out: Path, datagrams: Sequence[Datagram], left: StrongSwan, right: StrongSwan
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.hex"):
        old.unlink()
    for n, d in enumerate(datagrams, 1):
        role = "i" if d.from_original_initiator else "r"
        frag = f"-frag{d.fragment[0]}of{d.fragment[1]}" if d.fragment else ""
        name = f"{n:02d}-{role}-{d.exchange or 'ESP'}{frag}.hex"
        (out / name).write_text(d.payload.hex() + "\n")
    (out / "left.log").write_text(left.log())
    (out / "right.log").write_text(right.log())
    (out / "left-strongswan.conf").write_text(left.strongswan_conf.read_text())
    (out / "left-swanctl.conf").write_text(left.swanctl_conf.read_text())
    (out / "right-strongswan.conf").write_text(right.strongswan_conf.read_text())
    (out / "right-swanctl.conf").write_text(right.swanctl_conf.read_text())


def _cmd_run(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    with Lab(ipv6=args.ipv6, prefix=args.prefix) as lab:
        cap = lab.capture("left")
        left = lab.start_strongswan("left", config)
        right = lab.start_strongswan("right", config)
        result = left.initiate(timeout=args.timeout, check=False)
        time.sleep(0.2)  # let the last datagram reach the capture
        cap.stop()
        datagrams = [d for d in cap.datagrams() if d.ike_message is not None]
        print(
            f"{config.ike_proposal} / {config.esp_proposal} over "
            f"{'IPv6' if args.ipv6 else 'IPv4'}: "
            f"{'ESTABLISHED' if result.established else 'FAILED'} in {result.elapsed:.3f} s"
        )
        if result.established:
            sa = result.ike_sa
            print(f"  IKE   {sa.algorithms}")
            for child in sa.children:
                print(f"  CHILD {child.algorithms}")
        seq = datagram_sequence(datagrams, lab.address("left"))
        total = sum(len(d.payload) for d in datagrams)
        print(f"  {len(datagrams)} datagrams, {total} bytes: {seq}")
        for d in datagrams:
            marker = "+marker" if d.has_non_esp_marker else ""
            frag = f" frag {d.fragment[0]}/{d.fragment[1]}" if d.fragment else ""
            print(
                f"    {d.src}:{d.sport} -> {d.dst}:{d.dport} {len(d.payload):5} "
                f"{d.exchange} mid {d.message_id}{' resp' if d.is_response else ''}"
                f"{frag} {marker}"
            )
        if args.save:
            _save_run(Path(args.save), datagrams, left, right)
            print(f"  saved datagrams and logs to {args.save}")
        if not result.established:
            print(result.output.strip()[-2000:], file=sys.stderr)
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pqike.interop up|down|run``."""
    parser = argparse.ArgumentParser(
        prog="python -m pqike.interop", description=DESCRIPTION
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="bring a lab up with a charon on each side and leave it")
    _add_config_args(p_up)
    p_up.add_argument("--no-strongswan", action="store_true", help="namespaces only")
    p_up.add_argument(
        "--strongswan-side",
        choices=SIDES,
        help="charon on this side only; the other side gets a pqike configuration",
    )
    p_up.set_defaults(func=_cmd_up)
    p_down = sub.add_parser("down", help="remove every lab with the prefix (leftovers)")
    p_down.add_argument("--prefix", default=DEFAULT_PREFIX)
    p_down.add_argument("--keep-workdirs", action="store_true")
    p_down.set_defaults(func=_cmd_down)
    p_run = sub.add_parser("run", help="one strongSwan<->strongSwan case, captured")
    _add_config_args(p_run)
    p_run.add_argument("--timeout", type=float, default=15.0)
    p_run.add_argument("--save", metavar="DIR", help="write datagrams (.hex), logs and configs")
    p_run.set_defaults(func=_cmd_run)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
