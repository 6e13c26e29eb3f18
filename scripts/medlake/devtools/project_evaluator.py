"""dbt-project-evaluator on medlake's dbt project, outside the normal build.

dbt's hub is unreachable here and the normal ``medlake build`` must not depend on packages the
project does not ship, so the evaluator runs on a scratch copy of the project: the copy gets a
``packages.yml`` naming local checkouts of dbt-project-evaluator and dbt_utils (Apache-2.0, from
their public repositories), the exceptions seed built from ``vars.medlake_evaluator_exceptions`` in
``dbt_project.yml`` (each with its reason), and builds only the evaluator's models into a scratch
DuckDB file. A finding is a row of one of the evaluator's ``fct_*`` models that no exception covers.

    python -m medlake.devtools.project_evaluator --evaluator DIR --dbt-utils DIR   (make evaluate)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from medlake.errors import DbtError
from medlake.settings import dbt_project_dir

EVALUATOR_DIR_VARIABLE = "MEDLAKE_DBT_PROJECT_EVALUATOR_DIR"
DBT_UTILS_DIR_VARIABLE = "MEDLAKE_DBT_UTILS_DIR"
EXCEPTIONS_VARIABLE = "medlake_evaluator_exceptions"
EXCEPTIONS_SEED = "dbt_project_evaluator_exceptions"
# what a dbt project is made of; target/, logs/ and dbt_packages/ are never copied
PROJECT_PARTS = ("dbt_project.yml", "profiles.yml", "models", "macros", "seeds", "tests", "analyses")
# one-row summaries, not findings: coverage is checked by the evaluator's own tests against its targets
SUMMARY_MODELS = frozenset({"fct_test_coverage", "fct_documentation_coverage"})


@dataclass(frozen=True)
class Finding:
    rule: str  # the evaluator's fct_* model, e.g. fct_missing_primary_key_tests
    row: dict  # its row, as the evaluator reports it


@dataclass(frozen=True)
class Evaluation:
    findings: tuple[Finding, ...]
    warned_tests: tuple[str, ...]  # evaluator tests that warned or failed (coverage below target included)
    exceptions: int  # exceptions configured in dbt_project.yml
    coverage: dict  # fct_test_coverage and fct_documentation_coverage, one row each

    @property
    def rules(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.rule] = counts.get(finding.rule, 0) + 1
        return counts


def package_dirs(evaluator: Path | None = None, dbt_utils: Path | None = None) -> tuple[Path, Path]:
    """The two package checkouts: arguments, else $MEDLAKE_DBT_PROJECT_EVALUATOR_DIR / $MEDLAKE_DBT_UTILS_DIR."""
    found = []
    for given, variable, name in (
        (evaluator, EVALUATOR_DIR_VARIABLE, "dbt-project-evaluator"),
        (dbt_utils, DBT_UTILS_DIR_VARIABLE, "dbt_utils"),
    ):
        path = given or (Path(os.environ[variable]) if os.environ.get(variable) else None)
        if path is None or not (path / "dbt_project.yml").is_file():
            raise DbtError(
                f"{name} checkout not found ({path or 'unset'}): pass its folder or set ${variable} "
                f"(a checkout of github.com/dbt-labs/{name.replace('_', '-')}; dbt's hub is not used)"
            )
        found.append(path.resolve())
    return found[0], found[1]


def configured_exceptions(project: Path) -> list[dict]:
    """``vars.medlake_evaluator_exceptions`` of the project: rule, column, id (a LIKE pattern), reason."""
    config = yaml.safe_load((project / "dbt_project.yml").read_text())
    exceptions = (config.get("vars") or {}).get(EXCEPTIONS_VARIABLE) or []
    for exception in exceptions:
        missing = {"rule", "column", "id", "reason"} - set(exception)
        if missing:
            raise DbtError(f"dbt_project.yml {EXCEPTIONS_VARIABLE}: {exception} lacks {', '.join(sorted(missing))}")
    return exceptions


def _prepare(project: Path, scratch: Path, evaluator: Path, dbt_utils: Path) -> Path:
    copy = scratch / "project"
    copy.mkdir()
    for part in PROJECT_PARTS:
        source = project / part
        if source.is_dir():
            shutil.copytree(source, copy / part)
        elif source.is_file():
            shutil.copy2(source, copy / part)
    # the evaluator's own packages.yml names dbt_utils on the hub, which `dbt deps` cannot reach: a copy
    # without it, with dbt_utils beside it as a local package
    evaluator_copy = scratch / "dbt_project_evaluator"
    shutil.copytree(
        evaluator, evaluator_copy, ignore=shutil.ignore_patterns("packages.yml", "integration_tests*", ".git")
    )
    packages = {"packages": [{"local": str(evaluator_copy)}, {"local": str(dbt_utils)}]}
    (copy / "packages.yml").write_text(yaml.safe_dump(packages))
    with open(copy / "seeds" / f"{EXCEPTIONS_SEED}.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["fct_name", "column_name", "id_to_exclude", "comment"])
        for exception in configured_exceptions(project):
            writer.writerow([exception["rule"], exception["column"], exception["id"], exception["reason"]])
    config = yaml.safe_load((copy / "dbt_project.yml").read_text())
    # only one seed of that name may exist: the project's replaces the package's empty one
    config.setdefault("seeds", {})["dbt_project_evaluator"] = {EXCEPTIONS_SEED: {"+enabled": False}}
    (copy / "dbt_project.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return copy


def _dbt(arguments: list[str], copy: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    dbt = Path(sys.executable).parent / "dbt"
    command = [str(dbt) if dbt.exists() else "dbt", *arguments, "--project-dir", str(copy), "--profiles-dir", str(copy)]
    return subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, check=False)


def evaluate(
    evaluator: Path | None = None, dbt_utils: Path | None = None, *, project: Path | None = None
) -> Evaluation:
    """Run the evaluator on (a scratch copy of) the project; its findings minus the configured exceptions."""
    evaluator, dbt_utils = package_dirs(evaluator, dbt_utils)
    project = project or dbt_project_dir()
    with tempfile.TemporaryDirectory(prefix="medlake-evaluator-") as scratch_name:
        scratch = Path(scratch_name)
        copy = _prepare(project, scratch, evaluator, dbt_utils)
        warehouse = scratch / "evaluator.duckdb"
        env = dict(os.environ, MEDLAKE_LAKE_DIR=str(scratch / "lake"), MEDLAKE_WAREHOUSE_PATH=str(warehouse))
        env |= {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
        for arguments in (
            ["deps"],
            ["build", "--select", f"package:dbt_project_evaluator {EXCEPTIONS_SEED}", "--target", "dev"],
        ):
            done = _dbt(arguments, copy, env)
            if done.returncode != 0:
                raise DbtError(
                    f"dbt {arguments[0]} for the evaluator failed:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
                )
        results = json.loads((copy / "target" / "run_results.json").read_text())["results"]
        warned = tuple(
            sorted(
                r["unique_id"]
                for r in results
                if r["unique_id"].startswith("test.dbt_project_evaluator.") and r["status"] in ("warn", "fail", "error")
            )
        )
        rules = sorted(
            path.stem for path in (evaluator / "models" / "marts").rglob("fct_*.sql") if path.stem not in SUMMARY_MODELS
        )
        findings = []
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            built = {
                row[0]: row[1]
                for row in connection.execute(
                    "select table_name, schema_name from duckdb_tables() where schema_name <> 'marts'"
                ).fetchall()
            }
            coverage = {}
            for summary in sorted(SUMMARY_MODELS & set(built)):
                cursor = connection.execute(f'select * from "{built[summary]}"."{summary}"')
                names = [column[0] for column in cursor.description]
                coverage[summary] = dict(zip(names, cursor.fetchone(), strict=True))
            for rule in rules:
                if rule not in built:
                    continue  # disabled on this adapter or by configuration
                cursor = connection.execute(f'select * from "{built[rule]}"."{rule}"')
                names = [column[0] for column in cursor.description]
                findings += [Finding(rule, dict(zip(names, row, strict=True))) for row in cursor.fetchall()]
        return Evaluation(tuple(findings), warned, len(configured_exceptions(project)), coverage)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m medlake.devtools.project_evaluator",
        description="Run dbt-project-evaluator on medlake's dbt project (outside the normal build) and list "
        "every finding that dbt_project.yml's medlake_evaluator_exceptions does not cover. Exit 1 on findings.",
    )
    parser.add_argument("--evaluator", type=Path, help=f"dbt-project-evaluator checkout (${EVALUATOR_DIR_VARIABLE})")
    parser.add_argument("--dbt-utils", type=Path, help=f"dbt_utils checkout (${DBT_UTILS_DIR_VARIABLE})")
    arguments = parser.parse_args(argv)
    try:
        evaluation = evaluate(arguments.evaluator, arguments.dbt_utils)
    except DbtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for finding in evaluation.findings:
        print(f"{finding.rule}: {json.dumps(finding.row, default=str)}")
    for test in evaluation.warned_tests:
        print(f"warned: {test}")
    for summary, row in evaluation.coverage.items():
        print(f"{summary}: {json.dumps(row, default=str)}")
    print(
        f"{len(evaluation.findings)} finding(s), {len(evaluation.warned_tests)} evaluator test(s) warned, "
        f"{evaluation.exceptions} configured exception(s)",
        file=sys.stderr,
    )
    return 1 if evaluation.findings or evaluation.warned_tests else 0


if __name__ == "__main__":
    raise SystemExit(main())
