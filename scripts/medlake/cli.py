"""The ``medlake`` command line: a table of commands, nothing else.

Each :class:`Command` names its arguments and the function that runs it
(``medlake.commands``, imported only when the command runs, so ``medlake --help`` stays
instant and a lake-only install never imports the PACS loop). argparse, not click: the
commands were argparse already (flags and help texts stay exactly as users know them), and
a table of plain data is easier to read and test than decorators spread over the handlers.

Every command has ``--help`` and ``--format table|json``. Problems a user can fix are
:class:`medlake.errors.MedlakeError`\\ s and end as one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlake import __version__
from medlake.errors import MedlakeError
from medlake.file_modes import restrict_umask
from medlake.vocab import Engine

DEFAULT_LAKE = Path(os.environ.get("MEDLAKE_LAKE_DIR", "data/lake"))

EPILOG = """\
typical session:
  medlake synth --out data/synth --exams 10000 --seed 42
  medlake land --input data/synth --lake data/lake
  medlake build --lake data/lake
  medlake query covid-without-pneumonia --lake data/lake --month 2021-12
  medlake orthanc start && medlake pacs run --input data/synth/images --lake data/lake --allow-untrained-weights

environment:
  MEDLAKE_LAKE_DIR          default for --lake (data/lake)
  MEDLAKE_DBT_PROJECT_DIR   the dbt project (default: the checkout's, else the copy inside the package)
  ORTHANC_URL               Orthanc REST endpoint (default http://127.0.0.1:8042)
  ORTHANC_USERNAME/PASSWORD Orthanc credentials (default: the random password `orthanc start` wrote)
  MEDLAKE_ORTHANC_STORAGE   the Orthanc storage whose credentials.json clients read (default data/orthanc)
  MEDLAKE_XRV_WEIGHTS_DIR   where the TorchXRayVision weights file is looked for
  MEDLAKE_UMASK             umask for everything medlake writes (default 077; 007 for a team group)
  MEDLAKE_PSEUDONYM_KEY     hex key for patient pseudonyms (default: LAKE/keys/pseudonym.key)
"""


# --- argument types ------------------------------------------------------------------


# Whole-number arguments may end up in SQL as BIGINT: anything larger is an argument error, not a query failure.
MAX_WHOLE_NUMBER = 2**63 - 1


def _bounded_int(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not minimum <= value <= MAX_WHOLE_NUMBER:
            raise argparse.ArgumentTypeError(f"must be between {minimum} and {MAX_WHOLE_NUMBER}, got {value}")
        return value

    return parse


_positive_int = _bounded_int(1)
_non_negative_int = _bounded_int(0)


def _month(text: str) -> str:
    from medlake.warehouse.queries import month_bounds  # the one definition of a valid month

    try:
        month_bounds(text)
    except MedlakeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


# --- the table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call."""

    flags: tuple[str, ...]
    options: dict[str, Any]


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


LAKE = arg("--lake", type=Path, default=DEFAULT_LAKE, help="lake directory (default: $MEDLAKE_LAKE_DIR or data/lake)")
NO_PROGRESS = arg("--no-progress", action="store_true", help="no progress bar")
DELIVERY_DATE = arg("--delivery-date", type=_date, default=None, help="partition date (default: today, UTC)")
QUERY_ENGINE = arg(
    "--engine",
    choices=[engine.value for engine in Engine],
    default=Engine.DUCKDB.value,
    help="whose marts to answer from: duckdb (LAKE/medlake.duckdb, default) or spark (the Parquet tables a "
    "`medlake build --engine spark` wrote under LAKE/spark/warehouse, read by DuckDB)",
)


@dataclass(frozen=True)
class Command:
    """A (sub)command: its help, its arguments, and ``run`` = "function in medlake.commands"."""

    name: str
    help: str
    run: str | None = None
    description: str | None = None
    args: tuple[Arg, ...] = ()
    subcommands: tuple[Command, ...] = field(default_factory=tuple)
    dest: str = "command"  # where argparse stores the chosen subcommand's name
    metavar: str = "COMMAND"
    register: str | None = None  # a module whose add_parser(commands, default_lake) adds this command


QUERY = Command(
    "query",
    "answer the analysts' standard questions from the marts",
    dest="question",
    metavar="QUESTION",
    subcommands=(
        Command(
            "covid-without-pneumonia",
            "exams with a positive Covid label and no positive Pneumonia label in a month",
            run="query_covid_without_pneumonia",
            description="Count exams with a positive Covid label and no positive Pneumonia label. "
            "--date-basis exam filters on the exam's published_at month; label filters on the month the positive "
            "Covid label was given (labelled_on).",
            args=(
                LAKE,
                arg("--month", type=_month, required=True, help="YYYY-MM"),
                arg("--date-basis", choices=["exam", "label"], default="exam", help="which date the month filters"),
                QUERY_ENGINE,
            ),
        ),
        Command(
            "chest-many-labels",
            "a sample of exams of one body part with many labels, with their images",
            run="query_chest_many_labels",
            description="Exams of --body-part with at least --min-labels label entries, with image URI and DICOM "
            "fields.",
            args=(
                LAKE,
                arg("--body-part", default="Chest", help="canonical body part (default Chest)"),
                arg("--min-labels", type=_positive_int, default=6, help="minimum label entries (default 6)"),
                arg("--limit", type=_positive_int, default=20, help="sample size (default 20)"),
                QUERY_ENGINE,
            ),
        ),
    ),
)

PACS_OPTIONS = (
    LAKE,
    arg("--weights-dir", type=Path, default=None, help="directory holding the official weights file"),
    arg(
        "--allow-untrained-weights",
        action="store_true",
        help="if the official weights are absent, use a seeded random-init DenseNet (outputs marked UNTRAINED)",
    ),
    arg("--workers", type=_positive_int, default=4, help="concurrent Orthanc requests (default 4)"),
    arg("--batch-size", type=_positive_int, default=8, help="inference batch size (default 8)"),
    arg("--land-batch", type=_positive_int, default=16, help="land predictions every N reported images (default 16)"),
    arg(
        "--sr-workers",
        type=_non_negative_int,
        default=None,
        help="processes building SRs (default 0: a thread of this process; SRs are patched from a template)",
    ),
    arg(
        "--max-connection-failures",
        type=_positive_int,
        default=5,
        help="stop (exit 3) after this many consecutive failed connections to Orthanc (default 5)",
    ),
    arg("--results-dir", type=Path, default=Path("results"), help="per-image JSON (default results/)"),
    arg("--no-progress", action="store_true", help="no progress bars"),
    # The intended-use gate (README "The intended-use gate"); the choice is recorded in model_runs.gate_policy.
    arg(
        "--allow-view",
        action="append",
        choices=["lateral"],
        default=[],
        help="gate: also classify lateral views (LL/RL/LATERAL); default frontal PA/AP only",
    ),
    arg(
        "--min-age-years",
        type=float,
        default=18.0,
        help="gate: skip patients younger than this (PatientAge, else birth date to study date; default 18, the "
        "model's adult training data; 0: no limit); an unknown age is accepted, flagged age_absent",
    ),
    arg(
        "--require-body-part",
        dest="require_body_part",
        action="store_true",
        help="gate: skip instances without BodyPartExamined (default: accept them, flagged body_part_absent)",
    ),
    arg(
        "--allow-missing-body-part",
        dest="require_body_part",
        action="store_false",
        help="gate: accept instances without BodyPartExamined, flagged (the default)",
    ),
    arg(
        "--require-view",
        action="store_true",
        help="gate: skip instances without ViewPosition (default: accept them, flagged view_absent)",
    ),
)

PACS = Command(
    "pacs",
    "the PACS + AI loop: upload, classify, write SRs, land predictions (needs medlake[pacs])",
    dest="pacs_action",
    metavar="ACTION",
    subcommands=(
        Command(
            "run",
            "upload DICOMs to Orthanc, gate, run TorchXRayVision, store one DICOM SR per image, land predictions",
            run="pacs_run",
            description="1) upload every DICOM under INPUT to Orthanc; 2) the intended-use gate on each header "
            "(frontal human chest CR/DX, single-frame grayscale; skips land with their reason); 3) classify with "
            "TorchXRayVision densenet121-res224-all (not again what already has our SR and landed predictions); "
            "4) build one TID 1500 SR per image (in processes) and store it in the source's study as soon as it is "
            "built; 5) land predictions in small batches, results/*.json and model_runs. Without the official "
            "weights file this exits 2, unless --allow-untrained-weights, which marks every output UNTRAINED. "
            "Exit 3 when Orthanc became unreachable (re-run to resume).",
            args=(arg("--input", type=Path, required=True, help="directory of DICOM files"), *PACS_OPTIONS),
        ),
        Command(
            "watch",
            "follow Orthanc's /changes feed: classify each stable series as it arrives, SR back, land predictions",
            run="pacs_watch",
            description="Follows Orthanc's /changes feed (StableSeries, or StableStudy with --level study). Each "
            "instance of a stable series goes through the intended-use gate on its header; accepted ones are pulled "
            "(/instances/{id}/file), classified, reported as a DICOM SR in their study, and their predictions "
            "landed in small batches. The cursor (last change handled) is kept in LAKE/state/pacs_watch and moves "
            "only after a page is landed and its SRs stored: a restart resumes, a crash loses and duplicates "
            "nothing. Runs until SIGTERM/Ctrl-C (finishing the page in hand), or with --once until the backlog is "
            "done. Exit 3 when Orthanc became unreachable.",
            args=(
                arg("--once", action="store_true", help="handle the backlog, then exit (cron, backfill)"),
                arg(
                    "--level",
                    choices=["series", "study"],
                    default="series",
                    help="react to StableSeries (default) or StableStudy",
                ),
                arg(
                    "--since",
                    type=_non_negative_int,
                    default=None,
                    help="start after this change sequence instead of the lake's cursor (0: from the start)",
                ),
                arg("--poll-seconds", type=float, default=2.0, help="wait between polls when idle (default 2)"),
                arg("--page-size", type=_positive_int, default=10, help="changes per page (default 10)"),
                *PACS_OPTIONS,
            ),
        ),
    ),
)

COMMANDS: tuple[Command, ...] = (
    Command(
        "synth",
        "write a deterministic synthetic delivery (exams, reports, DICOMs) in the raw shape",
        run="synth",
        description="Write a synthetic delivery with every quirk of real ones (type drift, spelling variants, "
        "re-deliveries, empty and malformed files) plus small synthetic chest CR DICOMs for a share of the exams. "
        "Same --seed, same bytes.",
        args=(
            arg("--out", type=Path, required=True, help="output directory (gets exam/, medical_report/, images/)"),
            arg("--exams", type=_positive_int, default=10_000, help="number of exam records (default 10000)"),
            arg("--seed", type=int, default=42, help="random seed (default 42)"),
            arg(
                "--dicom-exams",
                type=_non_negative_int,
                default=None,
                help="how many exams get a real DICOM file in images/ (default: min(24, exams))",
            ),
            arg(
                "--records-per-file",
                type=_positive_int,
                default=None,
                help="records per exam/report file, up to 1000, as bulk exports come (JSON arrays, some JSON "
                "lines); default: 1-4 per file like the real sample (10 M exams: ~39 GB of small files vs ~11 GB)",
            ),
            NO_PROGRESS,
        ),
    ),
    Command(
        "land",
        "land a delivery (JSON exams/reports, image files) as Parquet in the lake's raw layer",
        run="land",
        description="Land INPUT/exam, INPUT/medical_report and optionally INPUT/images into LAKE/raw as Parquet. "
        "Files already landed (same path and sha256) are skipped, so re-running adds nothing. Bad records go to "
        "LAKE/raw/quarantine with file, position and reason; a file resolving outside INPUT (a symlink out of "
        "the delivery) is quarantined unread. Exit 0 when records were only quarantined; non-zero on a fatal "
        "error.",
        args=(
            arg("--input", type=Path, required=True, help="delivery directory"),
            LAKE,
            DELIVERY_DATE,
            arg("--workers", type=_positive_int, default=None, help="parallel workers (default: all cores)"),
            NO_PROGRESS,
        ),
    ),
    Command(
        "scan-dicom",
        "index DICOM headers (no pixels) of every file under a directory into raw dicom_instances",
        run="scan_dicom",
        description="Read only the header of each DICOM file under INPUT (stop_before_pixels) and land "
        "LAKE/raw/image_files and LAKE/raw/dicom_instances. Non-DICOM files are indexed, not read.",
        args=(
            arg("--input", type=Path, required=True, help="directory of image files"),
            LAKE,
            DELIVERY_DATE,
            NO_PROGRESS,
        ),
    ),
    Command(
        "build",
        "dbt build (staging, intermediate, marts, tests) on the lake, then dbt docs generate",
        run="build",
        description="A thin wrapper over `dbt build` run from the project directory with the lake path set.",
        args=(
            LAKE,
            arg("--full-refresh", action="store_true", help="rebuild incremental models from scratch"),
            arg("--select", default=None, help="dbt node selection, passed through"),
            arg("--no-docs", action="store_true", help="skip `dbt docs generate`"),
            arg(
                "--engine",
                choices=[engine.value for engine in Engine],
                default=Engine.DUCKDB.value,
                help="duckdb (default): the warehouse is LAKE/medlake.duckdb; spark: a local Apache Spark session "
                "(needs Java 17 and the .[spark] extras), metastore and Parquet tables in LAKE/spark/",
            ),
            arg(
                "--include-patient-id",
                action="store_true",
                help="also fill the marts' patient_id columns (default: NULL; marts always carry patient_pseudonym); "
                "changing this choice rebuilds every mart",
            ),
        ),
    ),
    Command(
        "docs",
        "serve the dbt docs (catalog + lineage) on 127.0.0.1",
        run="docs",
        args=(LAKE, arg("--port", type=_positive_int, default=8080, help="port (default 8080)")),
    ),
    QUERY,
    Command(
        "orthanc",
        "start, stop or check a local Orthanc PACS (Debian package `orthanc`) on loopback (needs medlake[pacs])",
        run="orthanc",
        description="Runs the `Orthanc` binary with a generated loopback-only configuration: remote access off, "
        "authentication on with a random password generated per storage (STORAGE/credentials.json, 0600; or "
        "ORTHANC_USERNAME/ORTHANC_PASSWORD), storage/index/log private (0700/0600). The DICOM port is off unless "
        "--dicom-port is given; it then accepts C-STORE/C-ECHO only from the --modality senders (AE title + IP), "
        "by default MEDLAKE_SCU@127.0.0.1.",
        args=(
            arg("action", choices=["start", "stop", "status"]),
            arg("--port", type=_positive_int, default=None, help="HTTP port (default: from ORTHANC_URL, 8042)"),
            arg(
                "--storage", type=Path, default=None, help="storage (default: $MEDLAKE_ORTHANC_STORAGE or data/orthanc)"
            ),
            arg("--dicom-port", type=_positive_int, default=None, help="enable the DICOM server on this port"),
            arg("--aet", default="MEDLAKE", help="Orthanc's own AE title, which senders must call"),
            arg(
                "--modality",
                action="append",
                default=[],
                metavar="AET@IP:PORT",
                help="a sender allowed to C-STORE (repeatable; IP defaults to 127.0.0.1, PORT to 104)",
            ),
            arg(
                "--modalities-file",
                action="append",
                default=[],
                type=Path,
                metavar="FILE",
                help="senders, one AET@IP:PORT per line (# comments)",
            ),
            arg(
                "--stable-age",
                type=_positive_int,
                default=None,
                metavar="SECONDS",
                help="Orthanc's StableAge: a series is announced stable (and `pacs watch` classifies it) this many "
                "seconds after its last instance arrived (Orthanc's default 60); every result waits at least this long",
            ),
        ),
    ),
    PACS,
    # Registered by its own module (its arguments live beside the export they drive).
    Command(
        "dataset",
        "training sets: export a filtered, split, de-identified set",
        run="dataset",
        register="medlake.dataset.command",
    ),
    Command(
        "demo",
        "the main job (`make run`): synth -> land -> dbt build -> answers -> PACS loop -> dbt build",
        run="demo",
        description="Run the whole product on a deterministic synthetic data set: no ../shared needed. "
        "With --format json the narrative goes to stderr and a summary to stdout.",
        args=(
            arg("--workdir", type=Path, default=Path("data/demo"), help="where data and lake go (data/demo)"),
            arg("--exams", type=_positive_int, default=5_000, help="synthetic exams (default 5000)"),
            arg("--seed", type=int, default=42, help="random seed (default 42)"),
            arg("--skip-pacs", action="store_true", help="lake only: no Orthanc, no inference"),
        ),
    ),
    Command(
        "bench",
        "measure landing, dbt, queries, DICOM, inference and Orthanc against their alternatives",
        run="bench",
        description="One run, every figure side by side on the same synthetic data, with the machine printed.",
        args=(
            arg("--exams", type=_positive_int, default=100_000, help="synthetic exams (default 100000)"),
            arg("--workdir", type=Path, default=Path("data/bench"), help="scratch directory (data/bench)"),
            arg("--skip-orthanc", action="store_true", help="skip the Orthanc upload figures"),
            arg("--skip-torch", action="store_true", help="skip the inference figures"),
            arg("--skip-dbt", action="store_true", help="skip the dbt build and query figures"),
            arg("--skip-spark", action="store_true", help="skip the Spark build figures (beside DuckDB's, same lake)"),
            arg("--output", type=Path, default=None, help="also write the JSON figures to this file"),
            arg(
                "--records-per-file",
                type=_positive_int,
                default=None,
                help="synthesise the delivery as files of N records (medlake synth --records-per-file); "
                "default 1-4 per file like the real sample",
            ),
            arg(
                "--growth-from",
                type=Path,
                default=None,
                help="a smaller run's JSON to report growth_* ratios from (default: bench-<exams/10>.json "
                "beside --output when it exists)",
            ),
        ),
    ),
)

FORMAT = arg("--format", choices=["table", "json"], default="table", help="output format (default: table)")


def _add(commands: argparse._SubParsersAction, command: Command) -> None:
    if command.register:
        importlib.import_module(command.register).add_parser(commands, DEFAULT_LAKE)
        commands.choices[command.name].set_defaults(run=command.run)
        return
    parser = commands.add_parser(command.name, help=command.help, description=command.description or command.help)
    if command.subcommands:
        nested = parser.add_subparsers(dest=command.dest, required=True, metavar=command.metavar)
        for subcommand in command.subcommands:
            _add(nested, subcommand)
        return
    for argument in (*command.args, FORMAT):
        parser.add_argument(*argument.flags, **argument.options)
    parser.set_defaults(run=command.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medlake",
        description="medlake: a medical-imaging data lake (exams, reports, labels, DICOM) on Parquet + dbt + DuckDB, "
        "with an Orthanc PACS and TorchXRayVision inference loop.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"medlake {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        _add(commands, command)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command (a function of medlake.commands). Returns the process exit code."""
    handler = getattr(importlib.import_module("medlake.commands"), args.run)
    return handler(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        restrict_umask()  # before anything is written: nothing medlake creates is readable by other users
        return run_command(args)
    except MedlakeError as exc:
        print(f"medlake: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("medlake: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
