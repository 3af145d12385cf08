"""The ``pqike`` command line (typer). It only calls the public API."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import ConfigurationError

app = typer.Typer(
    help="pqike: post-quantum IKEv2 (RFC 7296 + RFC 9370/9242/7383) research toolkit.",
    no_args_is_help=True,
    add_completion=False,
)
bench_app = typer.Typer(
    help="Benchmarks that print a ratio against a named anchor.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def algorithms(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List every key exchange method: ID, sizes, backends and whether it is available here."""
    from .crypto.kex import DEFAULT_REGISTRY

    rows: list[dict[str, Any]] = []
    for info in DEFAULT_REGISTRY.methods():
        backends = DEFAULT_REGISTRY.supporting_backends(info.method)
        rows.append(
            {
                "name": info.name,
                "id": info.method,
                "kind": info.kind,
                "initiator_bytes": info.initiator_size,
                "responder_bytes": info.responder_size,
                "backends": [
                    {"name": b, "available": DEFAULT_REGISTRY.is_available(info.method, b)}
                    for b in backends
                ],
                "available": DEFAULT_REGISTRY.is_available(info.method),
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(
        f"{'method':<15} {'id':>5} {'kind':<5} {'KEi':>7} {'KEr':>7}  {'available':<9}  backends"
    )
    for r in rows:
        bk = ", ".join(
            f"{b['name']}{'' if b['available'] else ' (unavailable)'}" for b in r["backends"]
        )
        typer.echo(
            f"{r['name']:<15} {r['id']:>5} {r['kind']:<5} {r['initiator_bytes']:>7} "
            f"{r['responder_bytes']:>7}  {'yes' if r['available'] else 'no':<9}  {bk or '-'}"
        )


@app.command()
def handshake(
    proposal: str = typer.Option(
        "aes256gcm16-prfsha384-x25519-ke1_mlkem768",
        "-p",
        "--proposal",
        help="IKE proposal in strongSwan syntax.",
    ),
    esp: str = typer.Option("aes256gcm16", "--esp", help="ESP proposal in strongSwan syntax."),
    responder_proposal: str | None = typer.Option(
        None, "--responder-proposal", help="What the responder accepts (default: the same)."
    ),
    fragment_size: int = typer.Option(1280, "--fragment-size", help="Largest IP datagram."),
    ipv6: bool = typer.Option(False, "--ipv6", help="Account for IPv6 headers."),
    delay: float = typer.Option(
        0.0, "--delay", min=0.0, help="One-way delay in milliseconds (simulated link)."
    ),
    jitter: float = typer.Option(
        0.0,
        "--jitter",
        min=0.0,
        help="Each datagram's delay varies uniformly by up to this many milliseconds.",
    ),
    loss: float = typer.Option(
        0.0,
        "--loss",
        min=0.0,
        max=100.0,
        help="Drop this percentage of datagrams, each way (percent, as in experiment specs).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the --loss and --jitter random draws."),
    backend: list[str] = typer.Option(  # noqa: B008 - typer reads the default
        [], "--backend", help="METHOD=BACKEND, e.g. mlkem768=pqcrypto (repeatable; both peers)."
    ),
    rekey: list[str] = typer.Option(  # noqa: B008 - typer reads the default
        [],
        "--rekey",
        help="After the handshake: child, ike, new-child, liveness, delete-child or delete "
        "(repeatable, in order; prefix responder: for the responder to act).",
    ),
    responder_esp: str | None = typer.Option(
        None, "--responder-esp", help="The responder's ESP proposal (default: the same)."
    ),
    auth: str = typer.Option(
        "psk",
        "--auth",
        help="psk, or a key type (p256, p384, p521, ed25519, ed448, rsa2048/3072/4096, "
        "mldsa44/65/87): certificates of a test PKI made on the fly; append +ppk8784 or "
        "+ppk9867 for a mandatory demo PPK agreed at IKE_AUTH (RFC 8784) or in "
        "IKE_INTERMEDIATE (RFC 9867).",
    ),
    preset: str = typer.Option(
        "pqike",
        "--preset",
        help="Optional payloads both peers send: pqike, strongswan (as strongSwan 6's "
        "defaults) or minimal (nothing optional).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    impair: list[str] = typer.Option(  # noqa: B008 - typer reads the default
        [],
        "--impair",
        help="Misbehave on purpose: NAME for the initiator, responder:NAME for the "
        "responder (repeatable; `pqike impairments` lists them).",
    ),
    pcap: str | None = typer.Option(
        None, "--pcap", help="Write every datagram to a pcap (simulated addresses, port 500)."
    ),
    secrets: str | None = typer.Option(
        None, "--secrets", help="Write the initiator's secrets transcript (0600)."
    ),
) -> None:
    """Run an in-memory handshake between two pqike peers and print every message,
    then any rekeys asked with --rekey, each with its own cost."""
    import random

    from .crypto.kex import DEFAULT_REGISTRY
    from .handshake import HandshakeResult, auth_options, make_pair, run_handshake

    choices = []
    for item in backend:
        name, sep, chosen = item.partition("=")
        if not sep:
            _fail(f"--backend {item!r}: write METHOD=BACKEND, e.g. mlkem768=pqcrypto")
        try:
            choices.append(DEFAULT_REGISTRY.backend_choice(name.strip(), chosen.strip()))
        except ConfigurationError as exc:
            _fail(f"--backend {item!r}: {exc}")
    options: dict[str, Any] | None = {"kex_backends": tuple(choices)} if choices else None
    roles: dict[str, list[str]] = {"initiator": [], "responder": []}
    for item in impair:
        role, sep, name = item.partition(":")
        if not sep:
            role, name = "initiator", item
        if role not in roles:
            _fail(f"--impair {item!r}: write NAME or responder:NAME")
        roles[role].append(name)
    ini_options: dict[str, Any] = dict(options or {})
    res_options: dict[str, Any] = dict(options or {})
    try:
        from .ike.impair import check_impairments

        if roles["initiator"]:
            ini_options["impairments"] = check_impairments(roles["initiator"])
        if roles["responder"]:
            res_options["impairments"] = check_impairments(roles["responder"])
    except ConfigurationError as exc:
        _fail(str(exc))

    deliver = None
    if loss:
        draws = random.Random(seed)

        def deliver(sender: str, data: bytes, index: int) -> list[bytes]:
            return [] if draws.random() < loss / 100.0 else [data]

    if pcap:
        deliver = _pcap_deliver(Path(pcap), deliver, ipv6=ipv6)

    try:
        if (delay or jitter) and rekey:
            _fail("--rekey runs in the in-memory pair only: leave out --delay and --jitter")
        if delay or jitter:
            # A link with delay or jitter needs the lab's event-driven simulation.
            from .lab.link import LinkProfile, simulate_handshake

            ini_auth, res_auth = auth_options(auth)
            initiator, responder = make_pair(
                proposal,
                esp,
                responder_proposal=responder_proposal,
                ipv6=ipv6,
                initiator_options={**ini_auth, **ini_options},
                responder_options={**res_auth, **res_options},
                fragment_size=fragment_size,
            )
            link = LinkProfile.from_spec_units(delay_ms=delay, jitter_ms=jitter, loss_pct=loss)
            run = simulate_handshake(initiator, responder, forward=link, seed=seed, ipv6=ipv6)
            result = HandshakeResult(
                run.established,
                run.trace,
                run.initiator_events,
                run.responder_events,
                run.cpu_initiator,
                run.cpu_responder,
                run.wall,
                run.established_at if run.established_at is not None else run.end_time,
                run.initiator,
                run.responder,
            )
        else:
            result = run_handshake(
                proposal,
                esp,
                responder_proposal=responder_proposal,
                fragment_size=fragment_size,
                ipv6=ipv6,
                deliver=deliver,
                initiator_options=ini_options or None,
                responder_options=res_options or None,
                responder_esp=responder_esp,
                then=rekey,
                auth=auth,
                preset=preset,
            )
    except (ConfigurationError, ValueError) as exc:
        _fail(str(exc))
        return
    if secrets:
        from .secrets import write_transcript

        write_transcript(secrets, result.initiator_events)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "summary": result.summary(),
                    "messages": result.trace.message_rows(),
                    "datagrams": result.trace.datagram_rows(),
                    "phases": result.phase_rows(),
                },
                indent=2,
            )
        )
    else:
        suite = result.suite
        typer.echo(f"proposal: {proposal}")
        typer.echo(result.trace.format_table())
        typer.echo(f"sequence: {result.trace.sequence()}")
        if result.established and suite is not None:
            from .crypto.kex import DEFAULT_REGISTRY

            rounds = (
                ", ".join(f"ADDKE{r}={DEFAULT_REGISTRY.info(m).name}" for r, m in suite.rounds)
                or "none"
            )
            typer.echo(f"established: {suite.describe()} (additional key exchanges: {rounds})")
            typer.echo(f"key exchange backends: {_backends_used(suite, choices)}")
            _echo_ppk_epochs(result.initiator_events)
            child = result.child
            if child is not None:
                typer.echo(
                    f"child SA: {child.suite.describe()} "
                    f"TSi {', '.join(map(str, child.ts_i))} TSr {', '.join(map(str, child.ts_r))}"
                )
            typer.echo(
                f"cpu: initiator {result.cpu_initiator * 1e3:.2f} ms, "
                f"responder {result.cpu_responder * 1e3:.2f} ms; "
                f"simulated time {result.simulated_time:.3f} s"
            )
            for phase in result.phases[1:]:
                t = phase.totals
                outcome = "ok" if phase.ok else f"FAILED: {phase.failure}"
                typer.echo(
                    f"{phase.name}: {t['messages']} messages, {t['datagrams']} datagrams, "
                    f"{t['round_trips']} round trips, {t['udp_bytes']} UDP bytes; cpu "
                    f"initiator {phase.cpu_initiator * 1e3:.2f} ms, responder "
                    f"{phase.cpu_responder * 1e3:.2f} ms; {outcome}"
                )
        else:
            for f in result.failures:
                typer.echo(f"failed: {f.reason}")
    if not result.established or not all(p.ok for p in result.phases):
        raise typer.Exit(1)


def _echo_ppk_epochs(events) -> None:
    """A line per PPK mixed into the IKE SA keys in IKE_INTERMEDIATE (RFC 9867 3)."""
    from .ike.events import IkeKeysDerived

    for e in events:
        if isinstance(e, IkeKeysDerived) and e.ppk_id:
            typer.echo(
                f"PPK: {e.ppk_id.decode(errors='replace')!r} mixed into every IKE SA key in "
                f"IKE_INTERMEDIATE (RFC 9867), key epoch {e.epoch}"
            )


def _backends_used(suite, choices: list[tuple[int, str]]) -> str:
    """``x25519 openssl, mlkem768 pqcrypto (--backend)``: who computed each key exchange,
    as ``KeyExchangeRegistry.create`` picks it (the chosen backend, else the first
    available one)."""
    from .crypto.kex import DEFAULT_REGISTRY

    chosen = dict(choices)
    methods = [m for m in (suite.ke, *suite.addke) if m]
    parts = []
    for m in dict.fromkeys(methods):
        name = DEFAULT_REGISTRY.info(m).name
        if m in chosen:
            parts.append(f"{name} {chosen[m]} (--backend)")
        else:
            available = DEFAULT_REGISTRY.backends_for(m)
            parts.append(f"{name} {available[0] if available else '?'}")
    return ", ".join(parts)


def _pcap_deliver(path: Path, inner, *, ipv6: bool):
    """A ``deliver`` hook that writes each datagram to ``path`` as it is sent (then
    applies ``inner``), from the in-memory peers' addresses on port 500."""
    from .handshake import INITIATOR_ADDRESS, RESPONDER_ADDRESS
    from .pcap import PcapWriter

    version = 6 if ipv6 else 4
    addr = {"initiator": INITIATOR_ADDRESS[version], "responder": RESPONDER_ADDRESS[version]}
    writer = PcapWriter(open(path, "wb"))  # closed at exit: it lives as long as the run

    def deliver(sender: str, data: bytes, index: int) -> list[bytes]:
        other = "responder" if sender == "initiator" else "initiator"
        writer.write_udp(data, addr[sender], addr[other], timestamp=index / 1000)
        writer.flush()
        return inner(sender, data, index) if inner is not None else [data]

    return deliver


def _with_impairments(peer, names: list[str] | None):
    """The peer configuration with ``--impair`` names added to its IKE configuration."""
    if not names:
        return peer
    from dataclasses import replace

    from .ike.impair import check_impairments

    try:
        extra = check_impairments(names)
    except ConfigurationError as exc:
        _fail(str(exc))
    return replace(peer, ike=replace(peer.ike, impairments=peer.ike.impairments | extra))


@app.command()
def impairments() -> None:
    """List the impairments: deliberate misbehaviour to probe peers with (--impair)."""
    from .ike.impair import IMPAIRMENTS

    width = max(map(len, IMPAIRMENTS))
    for name, what in IMPAIRMENTS.items():
        typer.echo(f"{name:<{width}}  {what}")


def _load_peer(config: str, allow_insecure_permissions: bool = False):
    from .io.config import load_peer_config

    try:
        return load_peer_config(config, allow_insecure_permissions=allow_insecure_permissions)
    except ConfigurationError as exc:
        _fail(str(exc))


# Options that initiate and respond share, declared once.
SecretsOption = Annotated[
    str | None,
    typer.Option(
        "--secrets",
        help="Write the secrets transcript (every key epoch, IntAuth, AUTH, KEYMAT; 0600).",
    ),
]
ImpairOption = Annotated[
    list[str] | None,
    typer.Option(
        "--impair", help="Misbehave on purpose (repeatable; `pqike impairments` lists them)."
    ),
]
InsecureOption = Annotated[
    bool,
    typer.Option(
        "--allow-insecure-permissions",
        help="Accept a peer configuration holding a PSK, or a private key file, that group "
        "or others may read.",
    ),
]


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None


@app.command()
def initiate(
    config: str = typer.Option(..., "--config", "-c", help="Peer configuration (TOML)."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the IKE SA."),
    pcap: str | None = typer.Option(None, "--pcap", help="Write every datagram to a pcap."),
    keylog: str | None = typer.Option(
        None, "--keylog", help="Write the IKE keys as a Wireshark ikev2_decryption_table."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    delete: bool = typer.Option(
        True, "--delete/--no-delete", help="Delete the IKE SA again once it is up."
    ),
    events: str | None = typer.Option(
        None,
        "--events",
        help="Write one JSON line per SA up, rekeyed, failed or deleted (suite, SPIs, keys, "
        "notify) and per CREATE_CHILD_SA, IKE_FOLLOWUP_KE and INFORMATIONAL message.",
    ),
    rekey: Annotated[
        list[str] | None,
        typer.Option(
            "--rekey",
            help="Once up, rekey the Child SA ('child') or the IKE SA ('ike'); repeat for "
            "more, run in the order given.",
        ),
    ] = None,
    new_child: int = typer.Option(
        0, "--new-child", min=0, help="Once up, first create this many more Child SAs."
    ),
    delete_child: bool = typer.Option(
        False, "--delete-child", help="After the rekeys, delete the newest Child SA."
    ),
    dpd: bool = typer.Option(
        False, "--dpd", help="After the rekeys, check the peer's liveness (empty INFORMATIONAL)."
    ),
    stay: str | None = typer.Option(
        None,
        "--stay",
        help="Hold the SA (rekeyed per its lifetimes) for SECONDS, or without a value "
        "(or 'forever') until Ctrl-C / SIGTERM, then delete it.",
        metavar="[SECONDS]",
    ),
    secrets: SecretsOption = None,
    impair: ImpairOption = None,
    allow_insecure_permissions: InsecureOption = False,
) -> None:
    # Help texts are rich markup, where "\[" is a literal bracket and "[peer]" a style tag
    # that would vanish (tests/test_cli.py checks that every word of every help arrives).
    """Bring up one IKE SA (and Child SA) with \\[peer] remote over UDP; print every message."""
    import asyncio
    import signal

    from .io.peer import initiate as run

    for what in rekey or ():
        if what not in ("child", "ike"):
            _fail(f"--rekey: expected 'child' or 'ike', not {what!r}")
    hold: float | None = 0.0  # 0: do not stay; None: until stopped
    if stay is not None and stay != _FOREVER:
        try:
            hold = float(stay)
        except ValueError:
            hold = -1.0
        if not hold >= 0 or hold == float("inf"):
            _fail(f"--stay: expected a number of seconds (or nothing), not {stay!r}")
    elif stay == _FOREVER:
        hold = None
    steps = ["new-child"] * new_child + list(rekey or ())
    steps += ["dpd"] * dpd + ["delete-child"] * delete_child
    peer = _with_impairments(_load_peer(config, allow_insecure_permissions), impair)

    def say(line: str) -> None:
        typer.echo(line)
        sys.stdout.flush()

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run(
            peer,
            timeout=timeout,
            pcap=_path(pcap),
            keylog=_path(keylog),
            delete=delete,
            events=_path(events),
            secrets=_path(secrets),
            steps=steps,
            stay=hold,
            stop=stop,
            log=say,
        )

    try:
        result = asyncio.run(main())
    except ConfigurationError as exc:  # an output file that cannot be written
        _fail(str(exc))
        return
    except OSError as exc:
        _fail(f"network: {exc}")
        return
    if as_json:
        typer.echo(json.dumps(result.summary(), indent=2))
    else:
        typer.echo(result.path())
        typer.echo(result.trace.format_table())
        if result.ike is not None:
            ike = result.ike
            typer.echo(
                f"established: {ike.suite.describe()} SPIs {ike.spi_i.hex()}_i {ike.spi_r.hex()}_r"
                f" (additional key exchanges: {len(ike.suite.rounds)})"
                f" in {result.elapsed * 1e3:.1f} ms"
            )
            _echo_ppk_epochs(result.events)
        if result.child is not None:
            child = result.child
            typer.echo(
                f"child SA: {child.suite.describe()} SPIs {child.spi_i.hex()}_i "
                f"{child.spi_r.hex()}_r TSi {', '.join(map(str, child.ts_i))} "
                f"TSr {', '.join(map(str, child.ts_r))}"
            )
    if not result.established:
        typer.echo(f"failed: {result.failure}", err=True)
        raise typer.Exit(1)


@app.command()
def respond(
    config: str = typer.Option(..., "--config", "-c", help="Peer configuration (TOML)."),
    pcap: str | None = typer.Option(None, "--pcap", help="Write every datagram to a pcap."),
    keylog: str | None = typer.Option(
        None, "--keylog", help="Write the IKE keys as a Wireshark ikev2_decryption_table."
    ),
    events: str | None = typer.Option(
        None,
        "--events",
        help="Write one JSON line per SA up, failed or deleted (suite, SPIs, keys, notify).",
    ),
    secrets: SecretsOption = None,
    impair: ImpairOption = None,
    allow_insecure_permissions: InsecureOption = False,
) -> None:
    """Answer IKE SAs on \\[peer] local until SIGINT or SIGTERM; log each SA up or failed."""
    import asyncio
    import signal

    from .io.peer import serve
    from .io.udp import format_address

    peer = _with_impairments(_load_peer(config, allow_insecure_permissions), impair)

    def say(line: str) -> None:
        typer.echo(line)
        sys.stdout.flush()

    async def main() -> dict[str, int]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        armed = [False]

        def flush() -> None:
            armed[0] = False
            sys.stdout.flush()

        def say_soon(line: str) -> None:
            # A line per SA, written off the hot path: flushed within 50 ms, not per line.
            sys.stdout.write(line + "\n")
            if not armed[0]:
                armed[0] = True
                loop.call_later(0.05, flush)

        def ready(udp) -> None:
            where = ", ".join(format_address(a) for a in udp.local_addresses)
            say(f"listening on {where}")

        return await serve(
            peer,
            stop,
            log=say_soon,
            pcap=_path(pcap),
            keylog=_path(keylog),
            ready=ready,
            events=_path(events),
            secrets=_path(secrets),
        )

    try:
        stats = asyncio.run(main())
    except ConfigurationError as exc:  # an output file that cannot be written
        _fail(str(exc))
        return
    except OSError as exc:
        _fail(f"network: {exc}")
        return
    counters = ", ".join(f"{k}={v}" for k, v in sorted(stats.items()))
    say(f"stopped: {counters or 'no datagrams received'}")


@bench_app.command("handshake")
def bench_handshake(
    proposal: str = typer.Option("aes256gcm16-prfsha384-x25519", "-p", "--proposal"),
    esp: str = typer.Option("aes256gcm16", "--esp"),
    runs: int = typer.Option(200, "--runs", help="Handshakes to time (and floors)."),
) -> None:
    """Median CPU of a whole in-memory handshake against its crypto floor, same run."""
    from .bench import bench_handshake as run

    try:
        report = run(proposal, esp, runs=runs)
    except ConfigurationError as exc:
        _fail(str(exc))
        return
    typer.echo(report.format())


@bench_app.command("memory")
def bench_memory(
    sas: int = typer.Option(10_000, "--sas", help="Established IKE SAs to hold."),
    proposal: str = typer.Option("aes256gcm16-prfsha384-x25519", "-p", "--proposal"),
    esp: str = typer.Option("aes256gcm16", "--esp"),
    rss: bool = typer.Option(False, "--rss", help="Measure resident set growth instead."),
) -> None:
    """Bytes per established IKE SA held by one responder endpoint, against 10 KB."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from .bench import bench_memory as run

    # On stderr, so stdout stays the report alone.
    bar = Progress(
        "establishing IKE SAs",
        BarColumn(),
        MofNCompleteColumn(),
        "eta",
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    try:
        with bar:
            task = bar.add_task("sas", total=sas)
            report = run(
                sas,
                proposal,
                esp,
                traced=not rss,
                progress=lambda done, _: bar.update(task, completed=done),
            )
    except ConfigurationError as exc:
        _fail(str(exc))
        return
    typer.echo(report.format())


@bench_app.command("flood")
def bench_flood(
    mode: str = typer.Option(
        "init", "--mode", help="init: spoofed IKE_SA_INIT; fragments: half-open SAs park fragments."
    ),
    rate: float = typer.Option(5000.0, "--rate", help="Attack datagrams per second."),
    duration: float = typer.Option(20.0, "--duration", help="Seconds of flood (then it stops)."),
    sources: int = typer.Option(512, "--sources", help="init: spoofed 127.100.x.y addresses."),
    sas: int = typer.Option(1000, "--sas", help="fragments: half-open IKE SAs (127.101.x.y)."),
    legit_rate: float = typer.Option(
        10.0, "--legit-rate", help="Legitimate handshakes started per second meanwhile."
    ),
    limit: list[str] = typer.Option(  # noqa: B008 - typer reads the default
        [], "--limit", help="KEY=VALUE for the responder's \\[responder] section (repeatable)."
    ),
) -> None:
    """Flood a fresh `pqike respond` on loopback; print its memory and who still got in."""
    from .bench_flood import bench_flood as run

    extra: dict[str, int | float] = {}
    for item in limit:
        key, sep, value = item.partition("=")
        try:
            extra[key.strip()] = float(value) if "." in value else int(value)
        except ValueError:
            sep = ""
        if not sep:
            _fail(f"--limit {item!r}: write KEY=NUMBER, e.g. reassembly_budget=33554432")
    try:
        report = run(
            mode,
            rate=rate,
            duration=duration,
            sources=sources,
            sas=sas,
            legit_rate=legit_rate,
            responder_limits=extra,
        )
    except ConfigurationError as exc:
        _fail(str(exc))
        return
    typer.echo(report.format())


@bench_app.command("interop")
def bench_interop(
    runs: int = typer.Option(20, "--runs", min=1, help="Timed handshakes per pair."),
    proposals: Annotated[
        list[str] | None,
        typer.Option(
            "-p",
            "--proposal",
            help="IKE proposal (repeatable; default: x25519-ke1_mlkem768 and x25519 with "
            "aes256gcm16-prfsha384).",
        ),
    ] = None,
    esp: str = typer.Option("aes256gcm16", "--esp", help="ESP proposal."),
) -> None:
    """Median handshake time on the wire, pqike and strongSwan 6 in the lab (needs root)."""
    from .interop.bench import DEFAULT_PROPOSALS, LabUnavailable
    from .interop.bench import bench_interop as run

    def progress(line: str) -> None:
        typer.echo(line, err=True)

    try:
        report = run(proposals or DEFAULT_PROPOSALS, esp, runs=runs, progress=progress)
    except (ConfigurationError, LabUnavailable) as exc:
        _fail(str(exc))
        return
    typer.echo(report.format())


@bench_app.command("capacity")
def bench_capacity(
    proposals: Annotated[
        list[str] | None,
        typer.Option(
            "-p",
            "--proposal",
            help="IKE proposal (repeatable; default: x25519-ke1_mlkem768 and x25519 with "
            "aes256gcm16-prfsha384).",
        ),
    ] = None,
    esp: str = typer.Option("aes256gcm16", "--esp", help="ESP proposal."),
    concurrency: int = typer.Option(
        16, "--concurrency", min=1, help="Handshakes the load keeps in flight."
    ),
    seconds: float = typer.Option(5.0, "--seconds", min=0.1, help="Counted seconds per run."),
) -> None:
    """Responder handshakes per second and CPU per handshake, pqike and charon driven
    the same way in the lab (needs root)."""
    from .interop.bench import DEFAULT_PROPOSALS, LabUnavailable
    from .interop.capacity import bench_capacity as run

    def progress(line: str) -> None:
        typer.echo(line, err=True)

    try:
        report = run(
            proposals or DEFAULT_PROPOSALS,
            esp,
            concurrency=concurrency,
            seconds=seconds,
            progress=progress,
        )
    except (ConfigurationError, LabUnavailable) as exc:
        _fail(str(exc))
        return
    typer.echo(report.format())


@app.command()
def fuzz(
    minutes: float | None = typer.Option(
        None, "--minutes", help="Run batches for this long (default: one batch)."
    ),
    examples: int = typer.Option(200, "--examples", min=1, help="Examples per target and batch."),
    target: list[str] = typer.Option(  # noqa: B008 - typer reads the default
        [], "--target", help="codec, endpoint, initiator or handshake (repeatable; default all)."
    ),
) -> None:
    """Fuzz the codec, the endpoint, the initiator and whole handshakes (hypothesis)."""
    try:
        from .fuzz import TARGETS, run
    except ImportError as exc:
        _fail(f"the fuzzer needs hypothesis ({exc}); install pqike[test]")
        return
    unknown = [t for t in target if t not in TARGETS]
    if unknown:
        _fail(f"--target {unknown[0]!r}: expected one of {', '.join(TARGETS)}")
    report = run(
        minutes=minutes,
        examples=examples,
        targets=tuple(target) or TARGETS,
        progress=lambda line: typer.echo(line, err=True),
    )
    typer.echo(report.format())
    if report.failures:
        raise typer.Exit(1)


@app.command()
def probe(
    out: str = typer.Option(
        "results/conformance-strongswan", "--out", help="Where report.md and rows.json go."
    ),
    only: list[str] = typer.Option(  # noqa: B008 - typer reads the default
        [], "--only", help="Probe only this impairment (repeatable)."
    ),
) -> None:
    """Run every impairment against strongSwan in both roles (interop lab, needs root)
    and tabulate what charon did beside pqike's own reaction."""
    import tempfile

    from .interop.lab import LabError, ensure_strongswan
    from .interop.peer import lab_unavailable
    from .interop.probe import CASES, run_probe, write_report

    why = lab_unavailable()
    if why:
        _fail(why)
    unknown = [n for n in only if n not in CASES]
    if unknown:
        _fail(f"unknown impairment {unknown[0]!r}; `pqike impairments` lists them")
    try:
        version = ensure_strongswan(install=True).version()
    except LabError as exc:
        _fail(str(exc))
        return
    with tempfile.TemporaryDirectory(prefix="pqike-probe-") as tmp:
        rows = run_probe(Path(tmp), only, progress=lambda line: typer.echo(line, err=True))
    path = write_report(rows, Path(out), version=version)
    findings = sum(r.finding for r in rows)
    typer.echo(f"{path}: {len(rows)} rows, {findings} finding(s)")


# --- pqike experiment: the experiment runner (pqike.lab) -----------------------------

pki_app = typer.Typer(help="Test PKIs: CAs, intermediates, certificates and keys.")
app.add_typer(pki_app, name="pki")


@pki_app.command("init")
def pki_init(
    directory: Path = typer.Argument(..., help="Where to write the files."),  # noqa: B008
    identity: list[str] = typer.Option(  # noqa: B008 - typer reads the default
        ..., "--id", help="An end entity's IKE identity (repeatable): FQDN, email or address."
    ),
    key_type: str = typer.Option("p256", "--key-type", help="End-entity key type."),
    ca_key_type: str | None = typer.Option(
        None, "--ca-key-type", help="CA and intermediate key type (default: --key-type)."
    ),
    intermediates: int = typer.Option(1, "--intermediates", min=0, max=5),
    days: float = typer.Option(365.0, "--days", help="End-entity validity in days."),
    rsa_pss: bool = typer.Option(False, "--rsa-pss", help="RSA CAs sign with RSASSA-PSS."),
) -> None:
    """Make a CA (ca.pem, ca.key), intermediate CAs and one certificate and key per --id
    (<id>.pem holds the chain, <id>.key is 0600), for every key type pqike signs with."""
    from .pki import make_pki

    try:
        pki = make_pki(
            directory,
            identity,
            key_type=key_type,
            ca_key_type=ca_key_type,
            intermediates=intermediates,
            days=days,
            rsa_pss=rsa_pss,
        )
    except (ConfigurationError, OSError) as exc:
        _fail(str(exc))
        return
    typer.echo(f"CA: {pki.ca_path}")
    for e in pki.entities.values():
        typer.echo(f"{e.identity}: certificate {e.cert_path}, key {e.key_path}")


experiment_app = typer.Typer(
    help="Experiments: specs (TOML) in experiments/, tables, plots and report in results/.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("run")
def experiment_run(
    spec: str = typer.Argument(
        ..., help="The spec file, e.g. experiments/hybrid-vs-classical.toml."
    ),
    out: str | None = typer.Option(
        None, "--out", help="Results directory (default: results/<experiment name>)."
    ),
    repeat: int | None = typer.Option(
        None, "--repeat", min=1, help="Repetitions in every cell instead of the spec's."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Replace a finished run of another spec in --out (or write into a directory "
        "that holds other files).",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Local processes for the simulated cells (default: one per core).",
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="A Dask scheduler (tcp://host:8786) to run the simulated cells on instead.",
    ),
) -> None:
    """Run every cell of SPEC; an interrupted run resumes where it stopped."""
    if (workers or os.cpu_count() or 1) > 1:
        from .forkserver import start_fork_server

        # First thing: the workers' fork server imports the lab on another core while
        # this process imports it too and reads the spec (the lab's import takes most of
        # a second).
        start_fork_server()
    from pathlib import Path

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .lab import check_pairs, default_pairs, load_spec, run_experiment
    from .lab.runner import check_out

    pairs = default_pairs()
    try:
        loaded = load_spec(spec)
        if repeat is not None:
            loaded = loaded.with_repetitions(repeat)
        check_pairs(loaded, pairs)
    except ConfigurationError as exc:
        _fail(str(exc))
        return
    target = Path(out) if out else Path("results") / loaded.name
    total = sum(loaded.repetitions_for(c) for c in loaded.cells())
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        "eta",
        TimeRemainingColumn(),
        disable=quiet,
        transient=False,
    )
    state = {"cells": 0}
    try:
        # --out is checked (and made) before the progress bar appears, so a bad path is
        # the only line printed.
        check_out(target, loaded, force=force)
        target.mkdir(parents=True, exist_ok=True)
    except ConfigurationError as exc:
        _fail(str(exc))
        return
    except OSError as exc:
        _fail(f"--out {target}: cannot create the directory ({exc.strerror or exc})")
        return
    try:
        with _interrupt_on_signals(), bar:
            task = bar.add_task(f"{loaded.name}: handshakes", total=total)

            def progress(p) -> None:
                state["cells"] = p.cells_done
                bar.update(task, completed=p.handshakes_done)

            result = run_experiment(
                loaded,
                target,
                pairs=pairs,
                progress=progress,
                force=force,
                workers=workers or os.cpu_count() or 1,
                scheduler=scheduler,
            )
    except ConfigurationError as exc:
        _fail(str(exc))
        return
    except OSError as exc:
        # Whatever the filesystem refuses once the run has started (a full disk, a
        # directory made read-only meanwhile): one sentence, not a traceback.
        _fail(f"--out {target}: cannot write the results ({exc.strerror or exc})")
        return
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted: {state['cells']} of {len(loaded.cells())} cells are saved in "
            f"{target}; run the same command again to finish the rest",
            err=True,
        )
        raise typer.Exit(130) from None
    ok = int(result.handshakes["established"].sum())
    dropped = result.cells_discarded
    typer.echo(
        f"{len(result.cells_run)} cells run, {len(result.cells_skipped)} already done"
        + (f", {dropped} discarded (the spec changed)" if dropped else "")
        + f"; {ok} of {len(result.handshakes)} handshakes established"
    )
    typer.echo(f"results: {target}/  report: {result.report}")


@contextlib.contextmanager
def _interrupt_on_signals():
    """While inside, SIGINT and SIGTERM stop a run the way Ctrl-C does (saved cells kept).

    A shell starts background jobs with SIGINT ignored, and Python keeps it ignored: a
    `kill -INT` then did nothing and the run went on to exit 0. SIGTERM would end the
    process without closing the pairs' daemons and threads. The previous handlers come
    back afterwards.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@experiment_app.command("report")
def experiment_report(
    directory: str = typer.Argument(..., help="A results directory (with handshakes.csv)."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Processes that draw the plots (default: one per core).",
    ),
) -> None:
    """Rebuild summary.csv, the plots and report.md from the CSV tables in DIRECTORY."""
    import os

    from .lab import build_report
    from .lab.metrics import table_path

    if not table_path(directory, "handshakes.csv").is_file():
        _fail(f"{directory}: no handshakes.csv here (run `pqike experiment run SPEC` first)")
        return
    typer.echo(f"report: {build_report(directory, workers=workers or os.cpu_count() or 1)}")


def _shipped_experiments() -> Path:
    """experiments/ in the working directory, else the one next to this checkout of pqike
    (so ``experiment list`` also works outside the repository's root)."""
    here = Path("experiments")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[1] / "experiments"


@experiment_app.command("list")
def experiment_list(
    directory: str | None = typer.Option(
        None,
        "--dir",
        help="Where the specs are (default: ./experiments, else the repository's).",
    ),
) -> None:
    """List the specs in experiments/ with their one-line description."""
    from .lab import describe_spec

    where = Path(directory) if directory else _shipped_experiments()
    specs = sorted(where.glob("*.toml"))
    if not specs:
        _fail(f"{where}: no experiment specs (*.toml) here")
        return
    width = max(len(str(p)) for p in specs)
    for path in specs:
        typer.echo(f"{path!s:<{width}}  {describe_spec(path)}")


@app.command()
def dissect(
    capture: str = typer.Argument(..., help="A pcap of IKE traffic."),
    secrets: list[str] = typer.Option(  # noqa: B008 - typer reads the default
        [], "--secrets", "-s", help="A secrets transcript (repeatable: both peers' may be given)."
    ),
    charon_log: list[str] = typer.Option(  # noqa: B008 - typer reads the default
        [], "--charon-log", help="A strongSwan charon log (ike = 4) to read secrets from."
    ),
    psk: str | None = typer.Option(
        None, "--psk", help="The pre-shared key, to recompute the AUTH payloads in full."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Decrypt and decode every IKE message of a capture with the secrets transcript:
    payload trees with RFC names, the key schedule step by step, the IntAuth chain, and
    everything that does not verify. Exits 1 when something does not verify."""
    from .lab.dissect import decode_files, format_decoded
    from .pcap import CaptureError
    from .secrets import TranscriptError

    try:
        decoded = decode_files(
            capture, secrets, charon_log, psk=psk.encode() if psk is not None else None
        )
    except (CaptureError, TranscriptError) as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(decoded.as_dict(), indent=2))
    else:
        typer.echo(format_decoded(decoded))
    if not decoded.ok:
        raise typer.Exit(1)


secrets_app = typer.Typer(
    help="The secrets transcript: every key epoch, IntAuth and KEYMAT (docs/secrets-transcript.md)."
)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("from-charon")
def secrets_from_charon(
    log: str = typer.Argument(..., help="A charon log written with ike = 4 and chd = 4."),
    output: str = typer.Option(..., "-o", "--output", help="The transcript to write (0600)."),
) -> None:
    """Convert strongSwan's level-4 charon log into a secrets transcript."""
    from .secrets import TranscriptError, transcript_from_charon_log, write_records

    try:
        text = Path(log).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        _fail(f"cannot read {log}: {exc.strerror}")
        return
    try:
        records = transcript_from_charon_log(text)
    except TranscriptError as exc:
        _fail(f"{log}: {exc}")
        return
    if not records:
        _fail(f"{log} holds no key dumps: run charon with ike = 4 and chd = 4")
    write_records(output, records, source=f"charon log {Path(log).name}")
    kinds = {k: sum(r.kind == k for r in records) for k in ("IKE_KEYS", "INT_AUTH", "AUTH")}
    typer.echo(
        f"{output}: {len(records)} records ("
        + ", ".join(f"{v} {k}" for k, v in kinds.items())
        + ")"
    )


_FOREVER = "forever"


def _optional_values(argv: list[str]) -> list[str]:
    """``--stay`` takes an optional value (``--stay`` alone, or ``--stay 60``), which typer
    cannot express: a bare ``--stay`` becomes ``--stay forever``."""
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == "--stay":
            following = argv[i + 1] if i + 1 < len(argv) else None
            try:
                float(following or "")
            except ValueError:
                if following != _FOREVER:
                    out.append(_FOREVER)
    return out


def main() -> None:
    """Entry point of the ``pqike`` script."""
    try:
        app(args=_optional_values(sys.argv[1:]))
    except ConfigurationError as exc:  # pragma: no cover - typer catches most
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
