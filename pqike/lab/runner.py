"""Run an experiment: every cell of the matrix, repetitions, tables on disk, resumable.

``run_experiment(spec, out)`` writes into ``out``::

    run.json           what was run (spec hash, --repeat, cells, complete) — the resume key
    spec.toml          a copy of the spec
    cells/<cell>/      handshakes.csv, messages.csv, datagrams.csv of one finished cell,
                       while the run is incomplete
    handshakes.csv     all cells, in spec order
    messages.csv       unless the spec sets ``record_messages = false``
    datagrams.csv
    payloads.csv       with ``record_payloads``: every part of every message
    phases.csv         with ``phases``: one row per handshake and phase of the SA's life
    summary.csv        per configuration and metric (see ``pqike.lab.metrics``)
    phase_summary.csv  with ``phases``: per configuration, phase and metric
    environment.json   package versions, machine, seed, spec hash
    report.md, *.png   from ``pqike.lab.report.build_report``

A cell directory appears only once the cell is complete (it is written under a
temporary name and renamed), so an interrupted run leaves whole cells behind and the
next run with the same spec and ``--repeat`` runs only the missing ones. Once every cell
is done the combined tables are written, ``run.json`` says ``complete`` and ``cells/``
is removed; running a complete experiment again only rebuilds the report. Unfinished
cells of a different spec (by SHA-256 of its text) or ``--repeat`` are discarded; a
*finished* run of another spec, or a directory that holds other files and no run, is
left alone: ``run_experiment`` refuses with a ``ConfigurationError`` (field ``out``)
unless ``force=True``. An ``out`` that cannot be a directory (a file, an unwritable
place) is one ``ConfigurationError`` too.

A pair may hold resources across handshakes (the strongSwan pairs keep their daemons
running between repetitions); ``run_experiment`` calls its ``close()``, if it has one,
when the run ends, also on an error or an interruption.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigurationError
from .metrics import (
    COMPRESSED_SUFFIX,
    datagram_rows,
    handshake_row,
    message_rows,
    payload_rows,
    phase_rows,
    read_json,
    read_table,
    summarize,
    summarize_phases,
    table_path,
)
from .peers import HandshakeCase, PeerPair
from .pool import SharedPool
from .registry import default_pairs
from .spec import Cell, ExperimentSpec, load_spec

TABLES = ("handshakes", "messages", "datagrams", "payloads", "phases")


@dataclass(frozen=True)
class Progress:
    """Where a run is; passed to ``progress`` after each handshake, finished or skipped cell.

    ``cells_done`` counts cells whose results are saved (or were found saved).
    """

    cells_total: int
    cells_done: int
    handshakes_total: int
    handshakes_done: int
    cell: str
    skipped: bool = False
    """True when ``cell`` was found finished on disk and not run again."""


@dataclass
class CellResult:
    """The tables of one cell (``payloads`` is empty unless the spec records them,
    ``phases`` unless it has phases)."""

    cell: Cell
    handshakes: pd.DataFrame
    messages: pd.DataFrame
    datagrams: pd.DataFrame
    payloads: pd.DataFrame = field(default_factory=pd.DataFrame)
    phases: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class ExperimentResult:
    """The tables of a whole experiment and what the run did."""

    spec: ExperimentSpec
    out: Path | None
    handshakes: pd.DataFrame
    messages: pd.DataFrame
    datagrams: pd.DataFrame
    summary: pd.DataFrame
    cells_run: list[str] = field(default_factory=list)
    cells_skipped: list[str] = field(default_factory=list)
    cells_discarded: int = 0
    """Finished cells of an earlier run thrown away because the spec changed."""
    report: Path | None = None
    payloads: pd.DataFrame = field(default_factory=pd.DataFrame)
    """``payloads.csv`` (empty unless the spec sets ``record_payloads``)."""
    phases: pd.DataFrame = field(default_factory=pd.DataFrame)
    """``phases.csv`` (empty unless the spec has ``phases``)."""
    phase_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    """``phase_summary.csv`` (empty unless the spec has ``phases``)."""


def handshake_seed(seed: int, profile: str, repetition: int) -> int:
    """The link seed of one handshake.

    It depends on the experiment seed, the profile and the repetition but not on the
    proposal or pair, so every proposal meets the same random draws (common random
    numbers make the comparison between proposals sharper), and not on the order cells
    run in, so a resumed run gives the same numbers.
    """
    digest = hashlib.sha256(f"{seed}/{profile}/{repetition}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def check_pairs(spec: ExperimentSpec, pairs: Mapping[str, PeerPair]) -> None:
    """Raise ``ConfigurationError`` (field ``experiment.pairs``) if a pair cannot run here,
    or (field ``experiment.phases``) if the spec has phases a pair cannot run."""
    for i, name in enumerate(spec.pairs):
        pair = pairs.get(name)
        if pair is None:
            raise ConfigurationError(
                f"{spec.source}: experiment.pairs[{i}]: no implementation of peer pair {name!r}",
                field=f"experiment.pairs[{i}]",
            )
        # Before availability: a pair that cannot run phases cannot run this spec on
        # any machine, which is the more useful thing to hear.
        if spec.phases and not getattr(pair, "runs_phases", False):
            able = [n for n, p in pairs.items() if getattr(p, "runs_phases", False)]
            raise ConfigurationError(
                f"{spec.source}: experiment.phases: peer pair {name!r} runs the handshake "
                "only, not phases after it, so list only pairs that can "
                f"({', '.join(able) or 'none here'}) in experiment.pairs or drop the phases",
                field="experiment.phases",
            )
        refuse = getattr(pair, "refuse_phases", None)
        refused = refuse(spec.phases) if spec.phases and refuse is not None else None
        if refused:
            raise ConfigurationError(
                f"{spec.source}: experiment.phases: {refused}", field="experiment.phases"
            )
        reason = pair.unavailable_reason()
        if reason is not None:
            raise ConfigurationError(
                f"{spec.source}: experiment.pairs[{i}]: peer pair {name!r} is not available "
                f"here: {reason}",
                field=f"experiment.pairs[{i}]",
            )


def run_cell(
    spec: ExperimentSpec,
    cell: Cell,
    *,
    pairs: Mapping[str, PeerPair] | None = None,
    repetitions: int | None = None,
    on_handshake: Callable[[int], None] | None = None,
    start: int = 0,
) -> CellResult:
    """Run the repetitions of one cell and return its tables.

    ``repetitions`` defaults to the spec's count for the cell; ``on_handshake(repetition)``
    is called after each handshake. ``start`` runs repetitions ``start`` onwards (a chunk
    of the cell: each repetition's seed is its own, so chunks joined in order give the
    tables of the whole cell).
    """
    pairs = pairs if pairs is not None else default_pairs()
    pair = pairs[cell.pair]
    reps = repetitions if repetitions is not None else spec.repetitions_for(cell) - start

    def case(rep: int) -> HandshakeCase:
        return HandshakeCase(
            cell.proposal,
            cell.profile,
            handshake_seed(spec.seed, cell.profile.name, rep),
            retransmit_timeout=spec.retransmit_timeout_s,
            retransmit_tries=spec.retransmit_tries,
            max_time=spec.max_time_s,
            record_payloads=spec.record_payloads,
            phases=spec.phases,
        )

    if pair.simulated:
        # One unrecorded handshake first: the first one in a process pays one-time costs
        # (imports, OpenSSL and cipher set-up) that would inflate its CPU columns.
        pair.run(case(start))
    hs, msgs, dgrams, parts, phases = [], [], [], [], []
    for rep in range(start, start + reps):
        this = case(rep)
        run = pair.run(this)
        hs.append(handshake_row(spec.name, cell, rep, this.seed, run))
        if spec.record_messages:
            msgs.extend(message_rows(cell, rep, run))
        if spec.record_datagrams:
            dgrams.extend(datagram_rows(cell, rep, run))
        if spec.record_payloads:
            parts.extend(payload_rows(cell, rep, run))
        if spec.phases:
            phases.extend(phase_rows(spec.name, cell, rep, this.seed, run, spec.phases))
        if on_handshake is not None:
            on_handshake(rep)
    return CellResult(
        cell,
        pd.DataFrame(hs),
        pd.DataFrame(msgs),
        pd.DataFrame(dgrams),
        pd.DataFrame(parts),
        pd.DataFrame(phases),
    )


def run_experiment(
    spec: ExperimentSpec | str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    repeat: int | None = None,
    pairs: Mapping[str, PeerPair] | None = None,
    progress: Callable[[Progress], None] | None = None,
    report: bool = True,
    force: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
) -> ExperimentResult:
    """Run every cell of ``spec`` (a spec or the path of its TOML file).

    ``workers`` above 1 runs the simulated cells in that many local processes, in chunks
    of repetitions; ``scheduler`` (``tcp://host:8786``) runs them on a Dask
    ``distributed`` cluster instead (``pip install pqike[dask]``). Each repetition has its
    own seed, so every column but the CPU and wall-clock times is the same whatever runs
    them; cells of real peers (the lab pairs) always run here, one after the other. With
    ``workers`` above 1 the same local processes then write the combined tables and draw
    the report's plots.

    With ``out`` the tables, the report and the per-cell journal are written there and
    a rerun resumes (a finished run is not run again: its tables are read back); without
    it nothing is written and the tables are only returned. ``repeat`` forces that many
    repetitions in every cell. Every pair the spec names is checked before anything runs.
    ``force`` lets a run replace a finished run of another spec (or ``--repeat``) in
    ``out``, or write into a directory that holds other files.
    """
    if not isinstance(spec, ExperimentSpec):
        spec = load_spec(spec)
    if repeat is not None:
        spec = spec.with_repetitions(repeat)
    pairs = dict(pairs) if pairs is not None else default_pairs()
    check_pairs(spec, pairs)
    cells = spec.cells()
    reps = {cell.id: spec.repetitions_for(cell) for cell in cells}
    total_hs = sum(reps.values())
    outdir = Path(out) if out is not None else None
    discarded, complete = (0, False) if outdir is None else _prepare(outdir, spec, cells, force)

    if workers < 1:
        raise ConfigurationError("workers must be at least 1", field="workers")
    done_hs = 0
    cells_done = 0
    ran: list[str] = []
    skipped: list[str] = []
    finished: dict[int, CellResult] = {}
    todo: list[int] = []
    for index, cell in enumerate(cells):
        if complete or (outdir is not None and (outdir / "cells" / cell.id).is_dir()):
            skipped.append(cell.id)
            done_hs += reps[cell.id]
            cells_done += 1
            if progress is not None:
                progress(Progress(len(cells), cells_done, total_hs, done_hs, cell.id, True))
        else:
            todo.append(index)

    def finish(index: int, result: CellResult) -> None:
        nonlocal cells_done
        if outdir is not None:
            _save_cell(outdir, result)
        else:
            finished[index] = result
        ran.append(cells[index].id)
        cells_done += 1
        if progress is not None:
            # Only now is the cell safe on disk: an interruption from here on keeps it.
            progress(Progress(len(cells), cells_done, total_hs, done_hs, cells[index].id))

    parallel = workers > 1 or scheduler is not None
    spread = [i for i in todo if parallel and pairs[cells[i].pair].simulated]
    # One pool of local workers for the whole run (cells, combined tables, the report's
    # plots), started when first needed: a pool start per phase cost a second each.
    plots = _report_tasks() if report and outdir is not None else 0
    with SharedPool(workers, at_least=plots) as pool:
        try:
            if spread:
                for index, result, count in _spread(spec, cells, spread, pairs, pool, scheduler):
                    done_hs += count
                    if result is None:  # a chunk of a cell that is not complete yet
                        if progress is not None:
                            progress(Progress(len(cells), cells_done, total_hs, done_hs, "…"))
                        continue
                    finish(index, result)
            for index in todo:
                if index in spread:
                    continue
                cell = cells[index]

                def tick(rep: int, cell: Cell = cell) -> None:
                    nonlocal done_hs
                    done_hs += 1
                    if progress is not None:
                        progress(Progress(len(cells), cells_done, total_hs, done_hs, cell.id))

                finish(index, run_cell(spec, cell, pairs=pairs, on_handshake=tick))
        finally:
            # Pairs that keep daemons or namespaces between handshakes release them here.
            for pair in pairs.values():
                close = getattr(pair, "close", None)
                if callable(close):
                    close()
        results = [finished[i] for i in sorted(finished)]

        names = _tables(spec)
        writes: list[Future[None]] = []
        if outdir is not None and not complete and workers > 1:
            # The workers write the combined tables (reading the cells back and
            # compressing is most of that time) while this process reads them for the
            # result and the summary: the same reads and writes as below, in parallel.
            writes = [
                pool.get(len(names)).submit(_combine_table, outdir, cells, n, spec.compress_tables)
                for n in names
            ]
        if outdir is None:
            tables = {
                n: pd.concat([getattr(r, n) for r in results], ignore_index=True) for n in names
            }
        elif complete:
            tables = {n: read_table(table_path(outdir, f"{n}.csv")) for n in names}
        else:
            tables = {n: _read_cells(outdir, cells, n) for n in names}
        tables.setdefault("messages", pd.DataFrame())
        tables.setdefault("datagrams", pd.DataFrame())
        tables.setdefault("payloads", pd.DataFrame())
        tables.setdefault("phases", pd.DataFrame())
        summary = summarize(tables["handshakes"])
        phase_summary = summarize_phases(tables["phases"]) if spec.phases else pd.DataFrame()
        result = ExperimentResult(
            spec,
            outdir,
            tables["handshakes"],
            tables["messages"],
            tables["datagrams"],
            summary,
            ran,
            skipped,
            discarded,
            payloads=tables["payloads"],
            phases=tables["phases"],
            phase_summary=phase_summary,
        )
        if outdir is not None:
            if not complete:
                for future in writes:
                    future.result()
                if not writes:
                    for n in names:
                        _write_table(outdir, n, tables[n], compress=spec.compress_tables)
                summary.to_csv(outdir / "summary.csv", index=False)
                if spec.phases:
                    phase_summary.to_csv(outdir / "phase_summary.csv", index=False)
                (outdir / "environment.json").write_text(
                    json.dumps(environment(spec), indent=2) + "\n", "utf-8"
                )
                # The combined tables now hold everything: the per-cell journal can go.
                _write_journal(outdir, spec, cells, complete=True)
                shutil.rmtree(outdir / "cells", ignore_errors=True)
            if report:
                from .report import build_report

                result.report = build_report(
                    outdir,
                    workers=workers,
                    summary=summary,
                    pool=pool.get() if workers > 1 else None,
                )
    return result


# --- cells in parallel: local processes or a Dask cluster -----------------------------------

_CHUNKS_PER_WORKER = 4
"""Chunks of repetitions per worker: enough to keep every worker busy to the end and the
progress bar moving, few enough that the unrecorded first handshake of each is cheap."""
_MIN_CHUNK = 4

_Task = tuple[int, ExperimentSpec, Cell, PeerPair, int, int]
"""(cell index, spec, cell, pair, first repetition, repetitions)."""


def _run_task(task: _Task) -> tuple[int, int, CellResult]:
    """One chunk of one cell, in a worker process (local or Dask)."""
    index, spec, cell, pair, start, count = task
    result = run_cell(spec, cell, pairs={cell.pair: pair}, repetitions=count, start=start)
    return index, start, result


def _local_results(tasks: list[_Task], pool: SharedPool):
    from concurrent.futures import as_completed

    executor = pool.get(len(tasks))
    futures = [executor.submit(_run_task, task) for task in tasks]
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        # Done, an error or Ctrl-C: chunks not yet taken are lost, not the cells already
        # saved (on an error or Ctrl-C the pool's end terminates the running ones).
        for future in futures:
            future.cancel()


def _dask_results(tasks: list[_Task], scheduler: str):
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ConfigurationError(
            "--scheduler needs Dask: pip install 'pqike[dask]' (dask and distributed)",
            field="scheduler",
        ) from None
    try:
        client = Client(scheduler, timeout="10s")
    except OSError as exc:
        raise ConfigurationError(
            f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})", field="scheduler"
        ) from None
    futures = []
    try:
        futures = [client.submit(_run_task, task, pure=False) for task in tasks]
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.cancel(futures)
        client.close()


def _spread(
    spec: ExperimentSpec,
    cells: list[Cell],
    indexes: list[int],
    pairs: Mapping[str, PeerPair],
    pool: SharedPool,
    scheduler: str | None,
):
    """Run the cells ``indexes`` in chunks on the workers; yield ``(cell index, its
    CellResult or None while chunks are missing, repetitions just done)``."""
    counts = {i: spec.repetitions_for(cells[i]) for i in indexes}
    slots = pool.workers if scheduler is None else max(pool.workers, len(indexes))
    size = max(_MIN_CHUNK, -(-sum(counts.values()) // (slots * _CHUNKS_PER_WORKER)))
    tasks: list[_Task] = [
        (i, spec, cells[i], pairs[cells[i].pair], start, min(size, counts[i] - start))
        for i in indexes
        for start in range(0, counts[i], size)
    ]
    parts: dict[int, list[tuple[int, CellResult]]] = {i: [] for i in indexes}
    done = {i: 0 for i in indexes}
    source = _local_results(tasks, pool) if scheduler is None else _dask_results(tasks, scheduler)
    for index, start, result in source:
        count = len(result.handshakes)
        parts[index].append((start, result))
        done[index] += count
        if done[index] < counts[index]:
            yield index, None, count
            continue
        chunks = [r for _, r in sorted(parts.pop(index), key=lambda item: item[0])]
        yield index, _joined(cells[index], chunks), count


def _joined(cell: Cell, chunks: list[CellResult]) -> CellResult:
    """The tables of a cell from its chunks, in repetition order."""
    if len(chunks) == 1:
        return chunks[0]

    def cat(name: str) -> pd.DataFrame:
        frames = [getattr(c, name) for c in chunks if not getattr(c, name).empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return CellResult(cell, *(cat(name) for name in TABLES))


def _tables(spec: ExperimentSpec) -> tuple[str, ...]:
    names: tuple[str, ...] = ("handshakes",)
    if spec.record_messages:
        names += ("messages",)
    if spec.record_datagrams:
        names += ("datagrams",)
    if spec.record_payloads:
        names += ("payloads",)
    if spec.phases:
        names += ("phases",)
    return names


def _run_key(spec: ExperimentSpec) -> dict[str, Any]:
    return {"spec_sha256": spec.sha256, "repeat": spec.repeat}


_OUTPUTS = (
    "handshakes.csv",
    "messages.csv",
    "datagrams.csv",
    "payloads.csv",
    "phases.csv",
    "handshakes.csv.gz",
    "messages.csv.gz",
    "datagrams.csv.gz",
    "payloads.csv.gz",
    "phases.csv.gz",
    "summary.csv",
    "phase_summary.csv",
    "environment.json",
    "report.md",
    "bytes_per_exchange.png",
    "latency_vs_delay.png",
    "latency_cdf.png",
    "overhead_vs_baseline.png",
    "pairs_compared.png",
    "lifetime_costs.png",
    "bytes_ke_vs_auth.png",
    # a spec's published comparison (pqike.lab.reproductions)
    "published.md",
    "loss_grid.csv",
    "loss_grid_median.png",
    "loss_grid_p95.png",
)
# What a run leaves in its directory: anything else there means it is not ours.
_OWN = frozenset({*_OUTPUTS, "run.json", "spec.toml", "cells", ".run.json.tmp"})


def _out_error(outdir: Path, message: str) -> ConfigurationError:
    return ConfigurationError(f"--out {outdir}: {message}", field="out")


def check_out(out: str | os.PathLike[str], spec: ExperimentSpec, *, force: bool = False) -> None:
    """Raise ``ConfigurationError`` (field ``out``) if ``out`` cannot take ``spec``'s results.

    ``out`` must be a directory or creatable as one, and writable; without ``force`` it
    must not hold a finished run of another spec (or ``--repeat``), nor other files when
    it holds no run at all. Nothing is created or changed.
    """
    outdir = Path(out)
    if outdir.exists() and not outdir.is_dir():
        raise _out_error(outdir, "is a file, not a directory; choose a directory for the results")
    existing = outdir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise _out_error(outdir, "a part of this path is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "the directory" if existing == outdir else f"{existing}"
        raise _out_error(outdir, f"{where} is not writable, so the results cannot go there")
    if force or existing != outdir:
        return
    old = read_json(outdir / "run.json")
    same = bool(old) and {k: old.get(k) for k in _run_key(spec)} == _run_key(spec)
    if old and not same and old.get("complete"):
        what = f"spec {old.get('source', '?')}" + (
            f" with --repeat {old['repeat']}" if old.get("repeat") else ""
        )
        raise _out_error(
            outdir,
            f"holds a finished run of {what}, which this run would replace; pass "
            "--force to replace it or choose another --out",
        )
    if not old and any(p.name not in _OWN for p in outdir.iterdir()):
        raise _out_error(
            outdir,
            "holds other files and no experiment run (no run.json); pass --force to "
            "write the results there anyway or choose another --out",
        )


def _prepare(
    outdir: Path, spec: ExperimentSpec, cells: list[Cell], force: bool = False
) -> tuple[int, bool]:
    """Get ``outdir`` ready; return (finished cells discarded, whole run already complete).

    Unfinished results of a different spec or ``--repeat`` are removed, so tables of two
    specs are never mixed; a finished run of another spec, or other files, only with
    ``force`` (see ``check_out``).
    """
    check_out(outdir, spec, force=force)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _out_error(outdir, f"cannot create the directory ({exc.strerror})") from None
    cells_dir = outdir / "cells"
    old = read_json(outdir / "run.json")
    same = bool(old) and {k: old.get(k) for k in _run_key(spec)} == _run_key(spec)
    if (
        same
        and old.get("complete")
        and all(table_path(outdir, f"{n}.csv").exists() for n in _tables(spec))
    ):
        return 0, True
    discarded = 0
    if not same:
        if cells_dir.exists():
            discarded = sum(1 for p in cells_dir.iterdir() if p.is_dir() and p.name[0] != ".")
            shutil.rmtree(cells_dir)
        for name in _OUTPUTS:
            (outdir / name).unlink(missing_ok=True)
    cells_dir.mkdir(exist_ok=True)
    for stale in cells_dir.glob(".*.partial"):
        shutil.rmtree(stale)
    _write_journal(outdir, spec, cells, complete=False)
    (outdir / "spec.toml").write_text(spec.text, "utf-8")
    return discarded, False


def _write_journal(
    outdir: Path, spec: ExperimentSpec, cells: list[Cell], *, complete: bool
) -> None:
    meta = {
        "experiment": spec.name,
        "description": spec.description,
        "source": spec.source,
        **_run_key(spec),
        "complete": complete,
        "seed": spec.seed,
        "repetitions": spec.repetitions,
        "baseline": spec.baseline,
        "highlight": spec.highlight,
        "retransmit_timeout_s": spec.retransmit_timeout_s,
        "retransmit_tries": spec.retransmit_tries,
        "pairs": list(spec.pairs),
        "phases": list(spec.phases),
        "published": spec.published,
        "proposals": {p.name: p.ike for p in spec.proposals},
        "esp": {p.name: p.esp for p in spec.proposals},
        "profiles": [
            {
                "name": p.name,
                **p.as_row(),
                "repetitions": spec.profile_repetitions(p),
            }
            for p in spec.profiles
        ],
        "cells": [c.id for c in cells],
    }
    tmp = outdir / ".run.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
    os.replace(tmp, outdir / "run.json")


def _save_cell(outdir: Path, result: CellResult) -> None:
    final = outdir / "cells" / result.cell.id
    partial = outdir / "cells" / f".{result.cell.id}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    for name in TABLES:
        getattr(result, name).to_csv(partial / f"{name}.csv", index=False)
    # The rename is the commit point: a cell directory is either whole or absent.
    os.replace(partial, final)


def _write_table(outdir: Path, name: str, table: pd.DataFrame, *, compress: bool) -> None:
    """``<name>.csv``, or ``<name>.csv.gz`` with ``compress`` (gzip with a zero time
    stamp: the same table gives the same file); the other form is removed."""
    plain = outdir / f"{name}.csv"
    packed = plain.with_name(plain.name + COMPRESSED_SUFFIX)
    if compress:
        table.to_csv(packed, index=False, compression={"method": "gzip", "mtime": 0})
        plain.unlink(missing_ok=True)
    else:
        table.to_csv(plain, index=False)
        packed.unlink(missing_ok=True)


def _combine_table(outdir: Path, cells: list[Cell], name: str, compress: bool) -> None:
    """Write the combined table ``name`` of the finished ``cells`` (in a worker process)."""
    _write_table(outdir, name, _read_cells(outdir, cells, name), compress=compress)


def _report_tasks() -> int:
    """How many tasks the report gives the workers (its plots)."""
    from .report import PLOTS

    return len(PLOTS)


def _read_cells(outdir: Path, cells: list[Cell], name: str) -> pd.DataFrame:
    frames = [read_table(outdir / "cells" / cell.id / f"{name}.csv") for cell in cells]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def environment(spec: ExperimentSpec) -> dict[str, Any]:
    """What the results depend on besides the spec: versions, machine, seed, spec hash."""
    packages = {}
    for name in ("pqike", "cryptography", "pandas", "numpy", "matplotlib", "typer"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    try:
        from cryptography.hazmat.backends.openssl import backend

        openssl = backend.openssl_version_text()
    except Exception:  # pragma: no cover - depends on the cryptography build
        openssl = None
    env: dict[str, Any] = {
        "experiment": spec.name,
        "spec": spec.source,
        "spec_sha256": spec.sha256,
        "seed": spec.seed,
        "repetitions": spec.repetitions,
        "repeat": spec.repeat,
        "pairs": list(spec.pairs),
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "packages": packages,
        "openssl": openssl,
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
        },
        "strongswan": _strongswan_version() if any("strongswan" in p for p in spec.pairs) else None,
    }
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _strongswan_version() -> str | None:
    try:
        from ..interop.lab import ensure_strongswan

        install = ensure_strongswan(install=False)
        return install.version()
    except Exception:  # the lab is optional: no build, not importable, not root
        return None


__all__ = [
    "CellResult",
    "ExperimentResult",
    "Progress",
    "check_out",
    "check_pairs",
    "environment",
    "handshake_seed",
    "run_cell",
    "run_experiment",
]
