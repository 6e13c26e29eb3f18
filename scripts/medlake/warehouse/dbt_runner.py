"""Running dbt (the project in the repo root) against one lake: ``medlake build`` and ``medlake docs``.

dbt runs as a subprocess of the same interpreter (dbt's ``cli()`` entry point) rather than
in-process: dbt-duckdb keeps a process-wide DuckDB connection, and a fresh process per
command means no stale handle on the warehouse file, no shared dbt global state between two
lakes, and a clean read-only open for ``medlake query`` afterwards.

Each lake gets its own dbt target and log directory (``target/lakes/<lake name>-<hash>/``)
so two lakes never overwrite each other's manifest, partial-parse state, run results or docs
catalog; the warehouse itself lives in the lake (``LAKE/medlake.duckdb``, from
``profiles.yml`` via ``MEDLAKE_LAKE_DIR``).

``build`` is incremental by default (docs/scaling.md): the incremental models fold in what
landed since the previous build. When the warehouse's build record (``build_state``) says the
same dbt project built it, dbt skips what cannot have changed - views, seeds, unit tests - and
data tests check only the rows landed since (``MEDLAKE_TESTS_CHANGED_SINCE``). When the project
changed since, the build is a full refresh, so no mart mixes two versions of the logic.

``engine`` picks the engine (:mod:`medlake.warehouse.engines`): DuckDB by default, or Apache
Spark (``--engine spark``, :mod:`medlake.warehouse.spark`); each keeps its own warehouse, build
record and dbt target directory in the same lake.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medlake.errors import DbtError
from medlake.lake import layout as lake_layout
from medlake.settings import dbt_project_dir
from medlake.warehouse import build_state, engines

PROJECT_DIR = dbt_project_dir()  # $MEDLAKE_DBT_PROJECT_DIR, the checkout, or the packaged copy
LAKE_TARGETS_DIR = PROJECT_DIR / "target" / "lakes"

# dbt's programmatic entry point, run by this interpreter in a child process. It writes each node's
# outcome to RESULTS_FILE itself, so a build can skip dbt's JSON artifacts (--no-write-json: writing
# manifest.json twice costs about a second per build) and still name the failing nodes.
RESULTS_FILE = "medlake_results.json"
DBT_LAUNCHER = """
import json, sys
from dbt.cli.main import dbtRunner
results_path, arguments = sys.argv[1], sys.argv[2:]
outcome = dbtRunner().invoke(arguments)
rows = [
    {"unique_id": r.node.unique_id, "status": str(getattr(r.status, "value", r.status)), "message": r.message or ""}
    for r in (getattr(outcome.result, "results", None) or [])
]
with open(results_path, "w") as handle:
    json.dump({"results": rows}, handle)
sys.exit(0 if outcome.success else 2 if outcome.exception is not None else 1)
"""
# What an incremental build skips when the warehouse was built by this very project: views are
# already defined (they read the raw Parquet live), seeds are already loaded, unit tests check
# SQL logic that has not changed (so do tests tagged `logic`). Tests of data still run, on the changed rows.
UNCHANGED_NODES = ("config.materialized:view", "resource_type:seed", "resource_type:unit_test", "tag:logic")
# The marts built from PACS raw tables only, and the PACS source's own tests: skipped while no PACS run wrote.
PACS_NODES = ("fct_predictions", "fct_model_runs", "source:pacs")
TESTS_SINCE_VARIABLE = "MEDLAKE_TESTS_CHANGED_SINCE"
# The landing's lock file (medlake.landing): a build never runs while a delivery is being landed,
# so every landing is either wholly before a build's watermark or wholly after it.
# Statuses in run_results.json that mean the build failed (warnings do not).
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


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

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "reason": self.reason,
            "full_refresh": self.full_refresh,
            "excluded": list(self.excluded),
            "tests_changed_since": self.tests_changed_since,
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
        }


def target_path_for(lake: Path, engine: str = engines.DEFAULT_ENGINE) -> Path:
    """The dbt target directory of one lake on one engine (manifest, run results, docs), under the repo's target/."""
    resolved = lake.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", resolved.name)[:40] or "lake"
    return LAKE_TARGETS_DIR / f"{readable}-{digest}{engines.get(engine).target_suffix}"


def _dbt_environment(
    lake: Path, tests_changed_since: str | None = None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    env["MEDLAKE_LAKE_DIR"] = str(lake)
    # Only an incremental medlake build scopes tests; never inherit a stale value.
    env.pop(TESTS_SINCE_VARIABLE, None)
    if tests_changed_since:
        env[TESTS_SINCE_VARIABLE] = tests_changed_since
    # No telemetry, no hub: medlake never needs the network at run time.
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    env["DO_NOT_TRACK"] = "1"
    env.update(extra or {})
    return env


def _dbt_command(subcommand: list[str], target_path: Path) -> list[str]:
    command = [
        sys.executable,
        "-c",
        DBT_LAUNCHER,
        str(target_path / RESULTS_FILE),
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
        command.append("--no-use-colors")
    return command


def _check_project() -> None:
    if not (PROJECT_DIR / "dbt_project.yml").is_file():
        raise DbtError(f"dbt project not found at {PROJECT_DIR} (is medlake installed from its repository?)")


def _run_dbt(
    subcommand: list[str],
    lake: Path,
    target_path: Path,
    *,
    quiet: bool,
    tests_changed_since: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Run one dbt command from the project dir; its output streams to ours unless ``quiet``."""
    command = _dbt_command(subcommand, target_path)
    (target_path / RESULTS_FILE).unlink(missing_ok=True)  # a stale file must never pass for this run's
    try:
        completed = subprocess.run(
            command,
            cwd=PROJECT_DIR,
            env=_dbt_environment(lake, tests_changed_since, extra_env),
            stdout=subprocess.PIPE if quiet else None,
            stderr=subprocess.STDOUT if quiet else None,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise DbtError(f"cannot start dbt with {command[0]}: {exc}") from exc
    return completed.returncode, completed.stdout or ""


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


def _failure_message(command: str, results: list[dict], output: str) -> str:
    failed = _outcomes(results, FAILED_STATUSES)
    if failed:
        listed = "; ".join(f"{f.unique_id} ({f.status}{': ' + f.message if f.message else ''})" for f in failed[:10])
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        return f"dbt {command} failed on {len(failed)} node(s): {listed}{more}"
    tail = "\n".join(ANSI_ESCAPE.sub("", output).strip().splitlines()[-15:])
    return f"dbt {command} failed before running any node (see dbt's output above){': ' + tail if tail else ''}"


def plan_build(lake: Path, *, full_refresh: bool, engine: str = engines.DEFAULT_ENGINE) -> BuildPlan:
    """Decide how to build ``lake``: incremental when this project built its warehouse, else full."""
    chosen = engines.get(engine)
    if full_refresh:
        return BuildPlan("full refresh", "requested (--full-refresh)", True, (), None)
    if not chosen.has_warehouse(lake):
        return BuildPlan("first build", "no warehouse yet: every model is built from the raw layer", False, (), None)
    state = chosen.read_state(lake)
    if state is None:
        return BuildPlan(
            "incremental",
            "the warehouse has no medlake build record: every node runs, tests see every row",
            False,
            (),
            None,
        )
    if state.project_fingerprint != chosen.project_fingerprint(PROJECT_DIR):
        # incremental tables would otherwise keep rows made by the old logic next to rows made by the new
        return BuildPlan(
            "full refresh",
            "the dbt project (models, macros, seeds) changed since this warehouse was built",
            True,
            (),
            None,
        )
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
    )


def build(
    lake: Path,
    *,
    full_refresh: bool = False,
    select: str | None = None,
    docs: bool = True,
    quiet: bool = False,
    engine: str = engines.DEFAULT_ENGINE,
) -> BuildSummary:
    """``dbt build`` (seeds, models, tests) on ``lake``, then ``dbt docs generate`` when ``docs``.

    Incremental unless ``full_refresh`` (or the dbt project changed since the warehouse was built,
    see :func:`plan_build`). Raises :class:`DbtError` naming the failing nodes when a model, test or
    seed fails; data tests configured as warnings (quarantine count, report/exam id mismatches) do
    not fail it. Holds the lake's landing lock: no delivery lands while dbt reads the raw layer.
    ``engine`` is 'duckdb' (default) or 'spark' (:mod:`medlake.warehouse.engines`).
    """
    _check_project()
    chosen = engines.get(engine)
    lake = Path(lake).resolve()
    lake_layout.init_lake(lake)  # every raw table gets its zero-row schema file, so every source resolves
    target_path = target_path_for(lake, chosen.name)
    target_path.mkdir(parents=True, exist_ok=True)
    warehouse = chosen.warehouse(lake)

    started = time.perf_counter()
    with lake_layout.exclusive_lock(
        lake, busy_message=f"a medlake land or build is using {lake}; wait for it to finish"
    ):
        reset = chosen.prepare(lake)
        if reset and not quiet:
            print(f"medlake build: {reset}: rebuilding it from the raw layer", file=sys.stderr)
        plan = plan_build(lake, full_refresh=full_refresh, engine=chosen.name)
        if not quiet:
            print(f"medlake build: {plan.mode} - {plan.reason}", file=sys.stderr)
        # read before dbt starts, under the lock: exactly what this build folds in
        landed_until = build_state.landed_until(lake)
        pacs_signature = build_state.pacs_signature(lake)
        fingerprint = chosen.project_fingerprint(PROJECT_DIR)
        arguments = ["build", "--target", chosen.dbt_target]
        if plan.full_refresh:
            arguments.append("--full-refresh")
        if select:
            arguments += ["--select", select]
        if plan.excluded:
            arguments += ["--exclude", *plan.excluded]
        if not docs:
            # docs generate reuses the manifest; without docs nothing needs dbt's JSON artifacts
            arguments.append("--no-write-json")
        returncode, output = _run_dbt(
            arguments,
            lake,
            target_path,
            quiet=quiet,
            tests_changed_since=plan.tests_changed_since,
            extra_env=chosen.dbt_environment(plan.mode != "incremental"),
        )
        results = _read_run_results(target_path)
        if returncode != 0:
            raise DbtError(_failure_message("build", results, output))
        if select is None:
            # only a complete build vouches for every model; a partial one leaves the record as it was
            chosen.write_state(
                lake,
                build_state.BuildState(
                    project_fingerprint=fingerprint,
                    lake_path=str(lake),
                    landed_until=landed_until,
                    pacs_signature=pacs_signature,
                    built_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                    full_refresh=plan.full_refresh,
                ),
            )

    docs_generated = False
    if docs:
        docs_generated = _generate_docs(lake, target_path, quiet=quiet, dbt_target=chosen.dbt_target)
    elapsed = time.perf_counter() - started

    status_counts: dict[str, int] = {}
    for result in results:
        status_counts[result["status"]] = status_counts.get(result["status"], 0) + 1
    return BuildSummary(
        lake=lake,
        warehouse=warehouse,
        target_path=target_path,
        status_counts=status_counts,
        warnings=_outcomes(results, frozenset({"warn"})),
        elapsed_s=elapsed,
        docs_generated=docs_generated,
        full_refresh=plan.full_refresh,
        select=select,
        plan=plan,
        engine=chosen.name,
    )


def _generate_docs(lake: Path, target_path: Path, *, quiet: bool, dbt_target: str = "dev") -> bool:
    arguments = ["docs", "generate", "--target", dbt_target]
    if (target_path / "manifest.json").is_file():
        # Right after a build the manifest is fresh: only the catalog is missing, so skip re-compiling.
        arguments.append("--no-compile")
    returncode, output = _run_dbt(arguments, lake, target_path, quiet=quiet)
    if returncode != 0:
        raise DbtError(_failure_message("docs generate", _read_run_results(target_path), output))
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
    returncode, output = _run_dbt(arguments, lake, target_path, quiet=True)
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
        _generate_docs(lake, target_path, quiet=False)
    print(f"serving the dbt docs of {lake} on http://127.0.0.1:{port} (Ctrl-C to stop)", file=sys.stderr)
    command = _dbt_command(["docs", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-browser"], target_path)
    try:
        server = subprocess.Popen(command, cwd=PROJECT_DIR, env=_dbt_environment(lake))
    except OSError as exc:
        raise DbtError(f"cannot start dbt docs serve: {exc}") from exc
    with _sigterm_as_exit():
        try:
            returncode = server.wait()
        finally:
            # Ctrl-C, `kill` or an error here: never leave the docs server running on its own.
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
    if returncode not in (0, -signal.SIGINT, -signal.SIGTERM, 130):
        raise DbtError(f"dbt docs serve exited with code {returncode} (is port {port} free?)")


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
