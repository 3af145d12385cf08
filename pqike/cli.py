"""The ``pqike`` command line (typer). It only calls the public API."""

from __future__ import annotations

import json
import sys

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

    rows = []
    for info in DEFAULT_REGISTRY.methods():
        backends = DEFAULT_REGISTRY.backends_for(info.method)
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
        f"{'method':<11} {'id':>4} {'kind':<5} {'KEi':>7} {'KEr':>7}  {'available':<9}  backends"
    )
    for r in rows:
        bk = ", ".join(
            f"{b['name']}{'' if b['available'] else ' (unavailable)'}" for b in r["backends"]
        )
        typer.echo(
            f"{r['name']:<11} {r['id']:>4} {r['kind']:<5} {r['initiator_bytes']:>7} "
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
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Run an in-memory handshake between two pqike peers and print every message."""
    from .handshake import run_handshake

    try:
        result = run_handshake(
            proposal,
            esp,
            responder_proposal=responder_proposal,
            fragment_size=fragment_size,
            ipv6=ipv6,
        )
    except ConfigurationError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "summary": result.summary(),
                    "messages": result.trace.message_rows(),
                    "datagrams": result.trace.datagram_rows(),
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
            rounds = ", ".join(f"ADDKE{r}={m}" for r, m in suite.rounds) or "none"
            typer.echo(f"established: {suite.describe()} (additional key exchanges: {rounds})")
            child = result.child
            if child is not None:
                typer.echo(
                    f"child SA: {child.suite.describe()} "
                    f"TSi {', '.join(map(str, child.ts_i))} TSr {', '.join(map(str, child.ts_r))}"
                )
            typer.echo(
                f"cpu: initiator {result.cpu_initiator * 1e3:.2f} ms, "
                f"responder {result.cpu_responder * 1e3:.2f} ms"
            )
        else:
            for f in result.failures:
                typer.echo(f"failed: {f.reason}")
    if not result.established:
        raise typer.Exit(1)


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


def main() -> None:
    """Entry point of the ``pqike`` script."""
    try:
        app()
    except ConfigurationError as exc:  # pragma: no cover - typer catches most
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
