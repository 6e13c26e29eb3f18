"""Running dbt (the project in the repo root) against one lake: ``medlake build`` and ``medlake docs``.

dbt runs in a guarded child process (``dbt_process``: it dies with ``medlake`` and holds the
lake lock with it) and builds into a new warehouse file that replaces the live one atomically
at the end (``warehouse_swap``), so readers never block a build nor see one half done.

Each lake gets its own dbt target and log directory (``target/lakes/<lake name>-<hash>/``)
so two lakes never overwrite each other's manifest, partial-parse state, run results or docs
catalog; the warehouse itself lives in the lake (``LAKE/medlake.duckdb``, from
``profiles.yml`` via ``MEDLAKE_LAKE_DIR``).

``build`` is incremental by default (docs/scaling.md): the incremental models fold in what
landed since the previous build. When the warehouse's build record (``build_state``) says the
same dbt project built it, dbt skips what cannot have changed - views, seeds, unit tests - and
data tests check only the rows landed since (``MEDLAKE_TESTS_CHANGED_SINCE``). When the project
changed since, the build is a full refresh, so no mart mixes two versions of the logic.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from medlake.errors import DbtError
from medlake.file_modes import restrict_umask
from medlake.lake import disk_space, pseudonyms
from medlake.lake import layout as lake_layout
from medlake.settings import dbt_project_dir
from medlake.warehouse import (
    build_state,
    dbt_process,
    duckdb_memory,
    engines,
    pseudonym_table,
    sql_text,
    warehouse_swap,
)

PROJECT_DIR = dbt_project_dir()  # $MEDLAKE_DBT_PROJECT_DIR, the checkout, or the packaged copy
LAKE_TARGETS_DIR = PROJECT_DIR / "target" / "lakes"

RESULTS_FILE = "medlake_results.json"
# What an incremental build skips when the warehouse was built by this very project: views are
# already defined (they read the raw Parquet live), seeds are already loaded, unit tests check
# SQL logic that has not changed (so do tests tagged `logic`). Tests of data still run, on the changed rows.
UNCHANGED_NODES = ("config.materialized:view", "resource_type:seed", "resource_type:unit_test", "tag:logic")
# The marts built from PACS raw tables only, and the PACS source's own tests: skipped while no PACS run wrote.
PACS_NODES = ("fct_predictions", "fct_model_runs", "fct_gate_decisions", "source:pacs")
TESTS_SINCE_VARIABLE = "MEDLAKE_TESTS_CHANGED_SINCE"
WAREHOUSE_VARIABLE = "MEDLAKE_WAREHOUSE_PATH"
RAW_LOCATION_VARIABLE = "MEDLAKE_RAW_LOCATION"
DERIVED_LOCATION_VARIABLE = "MEDLAKE_DERIVED_LOCATION"
# Statuses in run_results.json that mean the build failed (warnings do not).
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
OUT_OF_MEMORY = "Out of Memory Error"  # DuckDB's error when it can neither allocate nor spill
# dbt's log line as a node starts: "89 of 122 START sql table model marts.fct_medical_reports ..."
NODE_START_LINE = re.compile(
    r"(\d+) of (\d+) START (?:sql \w+ model|seed file|test|unit_test|snapshot|hook:) ([\w.:-]+)"
)


@dataclass(frozen=True)
class NodeOutcome:
    """One dbt node's result, for failures and warnings."""

    unique_id: str
    status: str
    message: str

    def to_dict(self) -> dict:
        return {"unique_id": self.unique_id, "status": self.status, "message": self.message}


@dataclass(frozen=True)
class BuildPlan:
    """How one ``medlake build`` runs dbt, and why."""

    mode: str  # 'first build' | 'incremental' | 'full refresh'
    reason: str
    full_refresh: bool
    excluded: tuple[str, ...]  # dbt selectors skipped because they cannot have changed
    tests_changed_since: str | None  # data tests check rows landed after this (naive UTC), or all rows
    include_patient_id: bool = False  # the marts' patient_id columns are filled (opt-in), else NULL

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "reason": self.reason,
            "full_refresh": self.full_refresh,
            "excluded": list(self.excluded),
            "tests_changed_since": self.tests_changed_since,
            "include_patient_id": self.include_patient_id,
        }


@dataclass(frozen=True)
class BuildSummary:
    """What ``dbt build`` (and ``docs generate``) did to one lake."""

    lake: Path
    warehouse: Path
    target_path: Path
    status_counts: dict[str, int]
    warnings: tuple[NodeOutcome, ...]
    elapsed_s: float
    docs_generated: bool
    full_refresh: bool
    select: str | None
    plan: BuildPlan | None = None
    engine: str = engines.DEFAULT_ENGINE
    warehouse_copy_s: float = 0.0  # copying the live warehouse into the build file (incremental builds)

    @property
    def node_count(self) -> int:
        return sum(self.status_counts.values())

    def render(self) -> str:
        counts = ", ".join(f"{status}={count}" for status, count in sorted(self.status_counts.items()))
        lines = [
            f"dbt build on {self.lake} ({self.engine}): {self.node_count} nodes ({counts}) in {self.elapsed_s:.1f} s",
            *([f"  mode       {self.plan.mode}: {self.plan.reason}"] if self.plan else []),
            f"  warehouse  {self.warehouse}",
            f"  docs       {'generated' if self.docs_generated else 'not generated'} ({self.target_path})",
        ]
        lines.extend(f"  warning    {w.unique_id}: {w.message}" for w in self.warnings)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "lake": str(self.lake),
            "warehouse": str(self.warehouse),
            "target_path": str(self.target_path),
            "status_counts": dict(self.status_counts),
            "warnings": [w.to_dict() for w in self.warnings],
            "elapsed_s": round(self.elapsed_s, 3),
            "docs_generated": self.docs_generated,
            "full_refresh": self.full_refresh,
            "select": self.select,
            "plan": self.plan.to_dict() if self.plan else None,
            "engine": str(self.engine),
            "warehouse_copy_s": round(self.warehouse_copy_s, 3),
        }


def target_path_for(lake: Path, engine: str = engines.DEFAULT_ENGINE) -> Path:
    """The dbt target directory of one lake on one engine (manifest, run results, docs), under the repo's target/."""
    resolved = lake.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", resolved.name)[:40] or "lake"
    return LAKE_TARGETS_DIR / f"{readable}-{digest}{engines.get(engine).target_suffix}"


def _dbt_environment(
    lake: Path, warehouse: Path, tests_changed_since: str | None = None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    env["MEDLAKE_LAKE_DIR"] = str(lake)
    # the file dbt writes (profiles.yml); the raw tables' read_parquet, quoted by sql_text (sources YAML)
    env[WAREHOUSE_VARIABLE] = str(warehouse)
    env[RAW_LOCATION_VARIABLE] = sql_text.table_location(lake / "raw")
    env[DERIVED_LOCATION_VARIABLE] = sql_text.table_location(pseudonym_table.derived_dir(lake))
    # Only an incremental medlake build scopes tests; never inherit a stale value.
    env.pop(TESTS_SINCE_VARIABLE, None)
    if tests_changed_since:
        env[TESTS_SINCE_VARIABLE] = tests_changed_since
    # No telemetry, no hub: medlake never needs the network at run time.
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    env["DO_NOT_TRACK"] = "1"
    env.update(duckdb_memory.dbt_environment(lake))  # DuckDB's memory cap and spill folder
    env.update(extra or {})
    return env


def _dbt_command(subcommand: list[str], target_path: Path) -> list[str]:
    arguments = [
        *subcommand,
        "--project-dir",
        ".",
        "--profiles-dir",
        ".",
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path / "logs"),
    ]
    if not sys.stdout.isatty():
        arguments.append("--no-use-colors")
    return dbt_process.launcher_command(target_path / RESULTS_FILE, arguments)


def _check_project() -> None:
    if not (PROJECT_DIR / "dbt_project.yml").is_file():
        raise DbtError(f"dbt project not found at {PROJECT_DIR} (is medlake installed from its repository?)")


def _run_dbt(
    subcommand: list[str],
    lake: Path,
    target_path: Path,
    *,
    warehouse: Path,
    quiet: bool,
    tests_changed_since: str | None = None,
    lock_fd: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Run one dbt command from the project dir on ``warehouse``; output streams to ours unless ``quiet``."""
    (target_path / RESULTS_FILE).unlink(missing_ok=True)  # a stale file must never pass for this run's
    return dbt_process.run(
        _dbt_command(subcommand, target_path),
        cwd=PROJECT_DIR,
        env=_dbt_environment(lake, warehouse, tests_changed_since, extra_env),
        quiet=quiet,
        inherit_fds=() if lock_fd is None else (lock_fd,),
    )


def _read_run_results(target_path: Path) -> list[dict]:
    results_file = target_path / RESULTS_FILE
    if not results_file.is_file():
        return []
    try:
        return json.loads(results_file.read_text())["results"]
    except (OSError, ValueError, KeyError):
        return []


def _outcomes(results: list[dict], statuses: frozenset[str]) -> tuple[NodeOutcome, ...]:
    return tuple(
        NodeOutcome(
            unique_id=r["unique_id"],
            status=r["status"],
            message=ANSI_ESCAPE.sub("", (r.get("message") or "").strip()).splitlines()[0]
            if (r.get("message") or "").strip()
            else "",
        )
        for r in results
        if r.get("status") in statuses
    )


def _failure_message(command: str, results: list[dict], output: str, *, returncode: int = 1, log_tail: str = "") -> str:
    if returncode < 0:
        return _killed_message(command, -returncode, log_tail or output)
    failed = _outcomes(results, FAILED_STATUSES)
    if failed:
        listed = "; ".join(f"{f.unique_id} ({f.status}{': ' + f.message if f.message else ''})" for f in failed[:10])
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        hint = ""
        if OUT_OF_MEMORY in log_tail or any(OUT_OF_MEMORY in f.message for f in failed):
            hint = (
                f" - DuckDB reached its memory cap ({duckdb_memory.MEMORY_LIMIT_VARIABLE}="
                f"{duckdb_memory.memory_limit()}) and could not spill: raise the cap or free disk in the lake"
            )
        return f"dbt {command} failed on {len(failed)} node(s): {listed}{more}{hint}"
    tail = "\n".join(ANSI_ESCAPE.sub("", output).strip().splitlines()[-15:])
    return f"dbt {command} failed before running any node (see dbt's output above){': ' + tail if tail else ''}"


def _killed_message(command: str, signal_number: int, log_text: str) -> str:
    """What to say when the kernel (or a user) killed dbt: which signal, where, and what to set."""
    try:
        name = signal.Signals(signal_number).name
    except ValueError:
        name = f"signal {signal_number}"
    started = NODE_START_LINE.findall(ANSI_ESCAPE.sub("", log_text))
    where = f" while running {started[-1][2]} (node {started[-1][0]} of {started[-1][1]})" if started else ""
    message = f"dbt {command} was killed by {name}{where}"
    if signal_number == signal.SIGKILL:
        message += (
            f": most likely the kernel's out-of-memory killer. DuckDB's cap was {duckdb_memory.memory_limit()};"
            f" set {duckdb_memory.MEMORY_LIMIT_VARIABLE} lower (e.g. a third of this machine's memory) so DuckDB"
            " spills to the lake's disk sooner, or stop other programs using memory"
        )
    return message


def _log_offset(target_path: Path) -> int:
    """Where this run's lines start in dbt's log (dbt appends to it across runs)."""
    try:
        return (target_path / "logs" / "dbt.log").stat().st_size
    except OSError:
        return 0


def _log_since(target_path: Path, offset: int) -> str:
    try:
        with (target_path / "logs" / "dbt.log").open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def plan_build(
    lake: Path,
    *,
    full_refresh: bool,
    include_patient_id: bool = False,
    pseudonym_key_id: str | None = None,
    engine: str = engines.DEFAULT_ENGINE,
) -> BuildPlan:
    """Decide how to build ``lake`` on ``engine``: incremental when this project built its warehouse, else full."""
    if pseudonym_key_id is None:
        pseudonym_key_id = pseudonym_table.key_id(pseudonyms.pseudonym_key(lake))
    chosen = engines.get(engine)

    def full(mode: str, reason: str) -> BuildPlan:
        return BuildPlan(mode, reason, mode == "full refresh", (), None, include_patient_id)

    if full_refresh:
        return full("full refresh", "requested (--full-refresh)")
    if not chosen.has_warehouse(lake):
        return full("first build", "no warehouse yet: every model is built from the raw layer")
    state = chosen.read_state(lake)
    if state is None:
        return BuildPlan(
            "incremental",
            "the warehouse has no medlake build record: every node runs, tests see every row",
            False,
            (),
            None,
            include_patient_id,
        )
    if state.project_fingerprint != chosen.project_fingerprint(PROJECT_DIR):
        # incremental tables would otherwise keep rows made by the old logic next to rows made by the new
        return full("full refresh", "the dbt project (models, macros, seeds) changed since this warehouse was built")
    if state.pseudonym_key_id != pseudonym_key_id:
        # one key per warehouse: a pseudonym made with another key would split a patient in two
        return full("full refresh", "the pseudonym key changed since this warehouse was built")
    if state.include_patient_id != include_patient_id:
        # every mart row must follow the same choice: no patient ids left behind, none missing
        choice = "included" if include_patient_id else "left out"
        return full("full refresh", f"patient ids are {choice} now (--include-patient-id changed)")
    since = state.landed_until.isoformat(sep=" ") if state.landed_until else None
    unchanged = list(UNCHANGED_NODES)
    skipped = "views, seeds and unit tests unchanged"
    if state.lake_path != str(lake):
        # the views name the raw Parquet by absolute path: a moved or copied lake needs them re-created
        unchanged.remove("config.materialized:view")
        skipped = "the lake moved, so views are re-created"
    if state.pacs_signature == build_state.pacs_signature(lake):
        unchanged += PACS_NODES
        skipped += "; no PACS run since"
    return BuildPlan(
        "incremental",
        f"folding in what landed after {since or 'the previous build'}; {skipped}",
        False,
        tuple(unchanged),
        since,
        include_patient_id,
    )


def build(
    lake: Path,
    *,
    full_refresh: bool = False,
    select: str | None = None,
    docs: bool = True,
    quiet: bool = False,
    include_patient_id: bool = False,
    engine: str = engines.DEFAULT_ENGINE,
) -> BuildSummary:
    """``dbt build`` (seeds, models, tests) on ``lake``, then ``dbt docs generate`` when ``docs``.

    Incremental unless ``full_refresh`` (or the dbt project changed since the warehouse was built,
    see :func:`plan_build`). Raises :class:`DbtError` naming the failing nodes when a model, test or
    seed fails; data tests configured as warnings (quarantine count, report/exam id mismatches) do
    not fail it. On DuckDB, dbt builds a copy of the warehouse that replaces the live file only when
    everything succeeded (``warehouse_swap``); the lake lock is held by this process and dbt until both end.
    ``include_patient_id`` fills the marts' ``patient_id`` columns (otherwise NULL; pseudonyms always).
    ``engine`` is 'duckdb' (default) or 'spark' (:mod:`medlake.warehouse.engines`).
    """
    restrict_umask()
    _check_project()
    chosen = engines.get(engine)
    lake = Path(lake).resolve()
    lake_layout.init_lake(lake)  # every raw table gets its zero-row schema file, so every source resolves
    target_path = target_path_for(lake, chosen.name)
    target_path.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    with lake_layout.exclusive_lock(
        lake, busy_message=f"a medlake land or build is using {lake}; wait for it to finish"
    ) as lock:
        reset = chosen.prepare(lake)
        if reset and not quiet:
            print(f"medlake build: {reset}: rebuilding it from the raw layer", file=sys.stderr)
        # the identifier -> pseudonym table the staging models join to (the key stays in Python)
        key_id = pseudonym_table.write(lake)
        plan = plan_build(
            lake,
            full_refresh=full_refresh,
            include_patient_id=include_patient_id,
            pseudonym_key_id=key_id,
            engine=chosen.name,
        )
        if not quiet:
            print(f"medlake build: {plan.mode} - {plan.reason}", file=sys.stderr)
        # read before dbt starts, under the lock: exactly what this build folds in
        record = _state_for(lake, plan, key_id, chosen)
        run = _BuildRun(lake, target_path, plan, record, chosen, select=select, docs=docs, quiet=quiet, lock=lock)
        results, docs_generated, copy_s = _build_on_duckdb(run) if chosen.name == "duckdb" else _build_on_spark(run)
    elapsed = time.perf_counter() - started

    status_counts: dict[str, int] = {}
    for result in results:
        status_counts[result["status"]] = status_counts.get(result["status"], 0) + 1
    return BuildSummary(
        lake=lake,
        warehouse=chosen.warehouse(lake),
        target_path=target_path,
        status_counts=status_counts,
        warnings=_outcomes(results, frozenset({"warn"})),
        elapsed_s=elapsed,
        docs_generated=docs_generated,
        full_refresh=plan.full_refresh,
        select=select,
        plan=plan,
        warehouse_copy_s=copy_s,
        engine=chosen.name,
    )


@dataclass(frozen=True)
class _BuildRun:
    """One build's settings, handed to the engine's build function."""

    lake: Path
    target_path: Path
    plan: BuildPlan
    record: build_state.BuildState
    engine: engines.Engine
    select: str | None
    docs: bool
    quiet: bool
    lock: BinaryIO


def _build_on_duckdb(run: _BuildRun) -> tuple[list[dict], bool, float]:
    """Build into a copy of the warehouse file, then publish it: (results, docs generated, copy seconds)."""
    copy_live = not run.plan.full_refresh
    disk_space.check_build(run.lake, lake_layout.warehouse_path(run.lake), copy_live=copy_live)  # before any write
    building, copy_s = warehouse_swap.prepare(run.lake, copy_live=copy_live)
    if not run.quiet and building.is_file():
        size_mb = building.stat().st_size / 1e6
        print(
            f"medlake build: building a copy of the warehouse ({size_mb:,.0f} MB copied in {copy_s:.2f} s)",
            file=sys.stderr,
        )
    try:
        results = _build_into(building, run)
        if run.select is None:
            # only a complete build vouches for every model; a partial one leaves the record as it was
            build_state.write(building, run.record)
        docs_generated = run.docs and _generate_docs(
            run.lake,
            run.target_path,
            building,
            quiet=run.quiet,
            lock=run.lock,
            include_patient_id=run.plan.include_patient_id,
        )
        warehouse_swap.publish(run.lake, building)
    finally:
        warehouse_swap.discard(run.lake)
    return results, docs_generated, copy_s


def _build_on_spark(run: _BuildRun) -> tuple[list[dict], bool, float]:
    """Build in the lake's Spark warehouse (no file to swap: Spark replaces each table as it goes)."""
    warehouse = run.engine.warehouse(run.lake)
    results = _build_into(warehouse, run)
    if run.select is None:
        run.engine.write_state(run.lake, run.record)
    docs_generated = run.docs and _generate_docs(
        run.lake,
        run.target_path,
        warehouse,
        quiet=run.quiet,
        lock=run.lock,
        include_patient_id=run.plan.include_patient_id,
        engine=run.engine,
    )
    return results, docs_generated, 0.0


def _state_for(lake: Path, plan: BuildPlan, pseudonym_key_id: str, engine: engines.Engine) -> build_state.BuildState:
    """The record a successful complete build will leave (everything read before dbt starts)."""
    return build_state.BuildState(
        project_fingerprint=engine.project_fingerprint(PROJECT_DIR),
        lake_path=str(lake),
        landed_until=build_state.landed_until(lake),
        pacs_signature=build_state.pacs_signature(lake),
        built_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
        full_refresh=plan.full_refresh,
        include_patient_id=plan.include_patient_id,
        pseudonym_key_id=pseudonym_key_id,
    )


def _build_into(building: Path, run: _BuildRun) -> list[dict]:
    """``dbt build`` into ``building`` (a DuckDB file, or LAKE/spark); the node results, or DbtError naming failures."""
    plan, select = run.plan, run.select
    arguments = ["build", "--target", run.engine.dbt_target, "--vars", _build_vars(plan.include_patient_id)]
    if plan.full_refresh:
        arguments.append("--full-refresh")
    if select:
        arguments += ["--select", select]
    if plan.excluded:
        arguments += ["--exclude", *plan.excluded]
    if not run.docs:
        # docs generate reuses the manifest; without docs nothing needs dbt's JSON artifacts
        arguments.append("--no-write-json")
    log_offset = _log_offset(run.target_path)
    returncode, output = _run_dbt(
        arguments,
        run.lake,
        run.target_path,
        warehouse=building,
        quiet=run.quiet,
        tests_changed_since=plan.tests_changed_since,
        lock_fd=run.lock.fileno(),
        extra_env=run.engine.dbt_environment(plan.mode != "incremental"),
    )
    results = _read_run_results(run.target_path)
    if returncode != 0:
        log_tail = _log_since(run.target_path, log_offset)
        raise DbtError(_failure_message("build", results, output, returncode=returncode, log_tail=log_tail))
    return results


def _build_vars(include_patient_id: bool) -> str:
    # the same --vars on build and docs generate, or dbt would re-parse the project in between
    return json.dumps({"include_patient_id": include_patient_id})


def _generate_docs(
    lake: Path,
    target_path: Path,
    warehouse: Path,
    *,
    quiet: bool,
    lock: BinaryIO | None = None,
    include_patient_id: bool = False,
    engine: engines.Engine | None = None,
) -> bool:
    """``dbt docs generate`` (the catalog) from ``warehouse``: the build file, before it is published."""
    target = (engine or engines.get(engines.DEFAULT_ENGINE)).dbt_target
    arguments = ["docs", "generate", "--target", target, "--vars", _build_vars(include_patient_id)]
    if (target_path / "manifest.json").is_file():
        # Right after a build the manifest is fresh: only the catalog is missing, so skip re-compiling.
        arguments.append("--no-compile")
    returncode, output = _run_dbt(
        arguments, lake, target_path, warehouse=warehouse, quiet=quiet, lock_fd=None if lock is None else lock.fileno()
    )
    if returncode != 0:
        raise DbtError(_failure_message("docs generate", _read_run_results(target_path), output, returncode=returncode))
    return True


def compile_analysis(lake: Path, name: str, *, variables: dict | None = None) -> str:
    """Compile one analysis (``analyses/<name>.sql``) for ``lake`` and return its SQL, ready to run."""
    _check_project()
    if not (PROJECT_DIR / "analyses" / f"{name}.sql").is_file():
        raise DbtError(f"no analysis named {name!r} in {PROJECT_DIR / 'analyses'}")
    lake = Path(lake).resolve()
    lake_layout.init_lake(lake)
    target_path = target_path_for(lake)
    compiled = target_path / "compiled" / "medlake" / "analyses" / f"{name}.sql"
    compiled.unlink(missing_ok=True)
    arguments = ["compile", "--select", name, "--vars", json.dumps(variables or {})]
    # compiling needs a connection, never the live warehouse's: a scratch file of the same name (same catalog)
    scratch = target_path / "compile" / lake_layout.WAREHOUSE_FILE
    scratch.parent.mkdir(exist_ok=True)
    returncode, output = _run_dbt(arguments, lake, target_path, warehouse=scratch, quiet=True)
    if returncode != 0 or not compiled.is_file():
        raise DbtError(_failure_message("compile", _read_run_results(target_path), output))
    return compiled.read_text()


def serve_docs(lake: Path, *, port: int = 8080) -> None:
    """Serve the lake's dbt docs on 127.0.0.1:``port`` until interrupted (generates them first if needed)."""
    _check_project()
    lake = Path(lake).resolve()
    if not lake_layout.warehouse_path(lake).is_file():
        raise DbtError(f"no warehouse at {lake_layout.warehouse_path(lake)}: run `medlake build --lake {lake}` first")
    target_path = target_path_for(lake)
    target_path.mkdir(parents=True, exist_ok=True)
    if not (target_path / "catalog.json").is_file() or not (target_path / "index.html").is_file():
        _generate_docs_from_copy(lake, target_path)
    print(f"serving the dbt docs of {lake} on http://127.0.0.1:{port} (Ctrl-C to stop)", file=sys.stderr)
    command = _dbt_command(["docs", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-browser"], target_path)
    env = _dbt_environment(lake, lake_layout.warehouse_path(lake))
    server = dbt_process.start(command, cwd=PROJECT_DIR, env=env)
    with _sigterm_as_exit():
        try:
            returncode = server.wait()
        finally:
            # Ctrl-C, `kill` or an error here: never leave the docs server running on its own.
            if server.poll() is None:
                dbt_process.kill_group(server)
    if returncode not in (0, -signal.SIGINT, -signal.SIGTERM, 130):
        raise DbtError(f"dbt docs serve exited with code {returncode} (is port {port} free?)")


def _generate_docs_from_copy(lake: Path, target_path: Path) -> None:
    """The docs catalog of a lake built without docs: read from a copy, never from the live file."""
    with lake_layout.exclusive_lock(lake, busy_message=f"a medlake land or build is using {lake}; try again after it"):
        copy, _ = warehouse_swap.prepare(lake, copy_live=True)
        try:
            _generate_docs(lake, target_path, copy, quiet=False)
        finally:
            warehouse_swap.discard(lake)


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while serving, so the cleanup above runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
