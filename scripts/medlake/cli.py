"""The ``medlake`` command line. It only parses arguments and hands them to the module that
owns the work; every module raises :class:`medlake.errors.MedlakeError` for problems a
user can fix, which end here as one clear line on stderr and a non-zero exit code.

Heavy imports (torch, dbt, pydicom) happen inside each command so ``medlake --help``
stays instant.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

from medlake import __version__
from medlake.errors import MedlakeError

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
  ORTHANC_URL               Orthanc REST endpoint (default http://127.0.0.1:8042)
  ORTHANC_USERNAME/PASSWORD Orthanc credentials (local-only defaults: medlake / medlake)
  MEDLAKE_XRV_WEIGHTS_DIR   where the TorchXRayVision weights file is looked for
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _month(text: str) -> str:
    try:
        dt.datetime.strptime(text, "%Y-%m")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM, got {text!r}") from None
    return text


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def _add_lake(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lake", type=Path, default=DEFAULT_LAKE, help="lake directory (default: $MEDLAKE_LAKE_DIR or data/lake)"
    )


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["table", "json"], default="table", help="output format (default: table)")


def _add_query_engine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=("duckdb", "spark"),
        default="duckdb",
        help="whose marts to answer from: duckdb (LAKE/medlake.duckdb, default) or spark (the Parquet tables a "
        "`medlake build --engine spark` wrote under LAKE/spark/warehouse, read by DuckDB)",
    )


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

    synth = commands.add_parser(
        "synth",
        help="write a deterministic synthetic delivery (exams, reports, DICOMs) in the raw shape",
        description="Write a synthetic delivery with every quirk of real ones (type drift, spelling variants, "
        "re-deliveries, empty and malformed files) plus small synthetic chest CR DICOMs for a share of the exams. "
        "Same --seed, same bytes.",
    )
    synth.add_argument(
        "--out", type=Path, required=True, help="output directory (gets exam/, medical_report/, images/)"
    )
    synth.add_argument("--exams", type=_positive_int, default=10_000, help="number of exam records (default 10000)")
    synth.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    synth.add_argument(
        "--dicom-exams",
        type=_non_negative_int,
        default=None,
        help="how many exams get a real DICOM file in images/ (default: min(24, exams))",
    )
    synth.add_argument("--no-progress", action="store_true", help="no progress bar")

    land = commands.add_parser(
        "land",
        help="land a delivery (JSON exams/reports, image files) as Parquet in the lake's raw layer",
        description="Land INPUT/exam, INPUT/medical_report and optionally INPUT/images into LAKE/raw as Parquet. "
        "Files already landed (same path and sha256) are skipped, so re-running adds nothing. Bad records go to "
        "LAKE/raw/quarantine with file, position and reason. Exit 0 when records were only quarantined; "
        "non-zero on a fatal error.",
    )
    land.add_argument("--input", type=Path, required=True, help="delivery directory")
    _add_lake(land)
    land.add_argument("--delivery-date", type=_date, default=None, help="partition date (default: today, UTC)")
    land.add_argument("--workers", type=_positive_int, default=None, help="parallel workers (default: all cores)")
    land.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_format(land)

    scan = commands.add_parser(
        "scan-dicom",
        help="index DICOM headers (no pixels) of every file under a directory into raw dicom_instances",
        description="Read only the header of each DICOM file under INPUT (stop_before_pixels) and land "
        "LAKE/raw/image_files and LAKE/raw/dicom_instances. Non-DICOM files are indexed, not read.",
    )
    scan.add_argument("--input", type=Path, required=True, help="directory of image files")
    _add_lake(scan)
    scan.add_argument("--delivery-date", type=_date, default=None, help="partition date (default: today, UTC)")
    scan.add_argument("--no-progress", action="store_true", help="no progress bar")

    build = commands.add_parser(
        "build",
        help="dbt build (staging, intermediate, marts, tests) on the lake, then dbt docs generate",
        description="A thin wrapper over `dbt build` run from the project directory with the lake path set.",
    )
    _add_lake(build)
    build.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    build.add_argument("--select", default=None, help="dbt node selection, passed through")
    build.add_argument("--no-docs", action="store_true", help="skip `dbt docs generate`")
    build.add_argument(
        "--engine",
        choices=("duckdb", "spark"),
        default="duckdb",
        help="duckdb (default): the warehouse is LAKE/medlake.duckdb; spark: a local Apache Spark session "
        "(needs Java 17 and the .[spark] extras), metastore and Parquet tables in LAKE/spark/",
    )

    docs = commands.add_parser("docs", help="serve the dbt docs (catalog + lineage) on 127.0.0.1")
    _add_lake(docs)
    docs.add_argument("--port", type=_positive_int, default=8080, help="port (default 8080)")

    query = commands.add_parser("query", help="answer the analysts' standard questions from the marts")
    questions = query.add_subparsers(dest="question", required=True, metavar="QUESTION")
    covid = questions.add_parser(
        "covid-without-pneumonia",
        help="exams with a positive Covid label and no positive Pneumonia label in a month",
        description="Count exams with a positive Covid label and no positive Pneumonia label. "
        "--date-basis exam filters on the exam's published_at month; label filters on the month the positive "
        "Covid label was given (labelled_on).",
    )
    _add_lake(covid)
    covid.add_argument("--month", type=_month, required=True, help="YYYY-MM")
    covid.add_argument("--date-basis", choices=["exam", "label"], default="exam", help="which date the month filters")
    _add_query_engine(covid)
    _add_format(covid)
    chest = questions.add_parser(
        "chest-many-labels",
        help="a sample of exams of one body part with many labels, with their images",
        description="Exams of --body-part with at least --min-labels label entries, with image URI and DICOM fields.",
    )
    _add_lake(chest)
    chest.add_argument("--body-part", default="Chest", help="canonical body part (default Chest)")
    chest.add_argument("--min-labels", type=_positive_int, default=6, help="minimum label entries (default 6)")
    chest.add_argument("--limit", type=_positive_int, default=20, help="sample size (default 20)")
    _add_query_engine(chest)
    _add_format(chest)

    orthanc = commands.add_parser(
        "orthanc",
        help="start, stop or check a local Orthanc PACS (Debian package `orthanc`) on loopback",
        description="Runs the `Orthanc` binary with a generated loopback-only configuration: remote access off, "
        "authentication on with ORTHANC_USERNAME/ORTHANC_PASSWORD, DICOM port off unless --dicom-port is given.",
    )
    orthanc.add_argument("action", choices=["start", "stop", "status"])
    orthanc.add_argument("--port", type=_positive_int, default=None, help="HTTP port (default: from ORTHANC_URL, 8042)")
    orthanc.add_argument("--storage", type=Path, default=None, help="storage directory (default: data/orthanc)")
    orthanc.add_argument("--dicom-port", type=_positive_int, default=None, help="enable the DICOM server on this port")

    pacs = commands.add_parser("pacs", help="the PACS + AI loop: upload, classify, write SRs, land predictions")
    pacs_actions = pacs.add_subparsers(dest="pacs_action", required=True, metavar="ACTION")
    pacs_run = pacs_actions.add_parser(
        "run",
        help="upload DICOMs to Orthanc, run TorchXRayVision, store one DICOM SR per image, land predictions",
        description="1) upload every DICOM under INPUT to Orthanc; 2) classify with TorchXRayVision "
        "densenet121-res224-all; 3) build one TID 1500 SR per image and store it in the source's study; "
        "4) verify placement from Orthanc; 5) write results/*.json and LAKE/raw/predictions + model_runs. "
        "Without the official weights file this exits 2, unless --allow-untrained-weights, which marks every "
        "output UNTRAINED.",
    )
    pacs_run.add_argument("--input", type=Path, required=True, help="directory of DICOM files")
    _add_lake(pacs_run)
    pacs_run.add_argument("--weights-dir", type=Path, default=None, help="directory holding the official weights file")
    pacs_run.add_argument(
        "--allow-untrained-weights",
        action="store_true",
        help="if the official weights are absent, use a seeded random-init DenseNet (outputs marked UNTRAINED)",
    )
    pacs_run.add_argument("--workers", type=_positive_int, default=4, help="concurrent uploads (default 4)")
    pacs_run.add_argument("--batch-size", type=_positive_int, default=8, help="inference batch size (default 8)")
    pacs_run.add_argument("--results-dir", type=Path, default=Path("results"), help="per-image JSON (default results/)")
    pacs_run.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_format(pacs_run)

    demo = commands.add_parser(
        "demo",
        help="the main job (`make run`): synth -> land -> dbt build -> answers -> PACS loop -> dbt build",
        description="Run the whole product on a deterministic synthetic data set: no ../shared needed.",
    )
    demo.add_argument("--workdir", type=Path, default=Path("data/demo"), help="where data and lake go (data/demo)")
    demo.add_argument("--exams", type=_positive_int, default=5_000, help="synthetic exams (default 5000)")
    demo.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    demo.add_argument("--skip-pacs", action="store_true", help="lake only: no Orthanc, no inference")

    bench = commands.add_parser(
        "bench",
        help="measure landing, dbt, queries, DICOM, inference and Orthanc against their alternatives",
        description="One run, every figure side by side on the same synthetic data, with the machine printed.",
    )
    bench.add_argument("--exams", type=_positive_int, default=100_000, help="synthetic exams (default 100000)")
    bench.add_argument("--workdir", type=Path, default=Path("data/bench"), help="scratch directory (data/bench)")
    bench.add_argument("--skip-orthanc", action="store_true", help="skip the Orthanc upload figures")
    bench.add_argument("--skip-torch", action="store_true", help="skip the inference figures")
    bench.add_argument("--skip-dbt", action="store_true", help="skip the dbt build and query figures")
    bench.add_argument(
        "--skip-spark", action="store_true", help="skip the Spark build figures (beside DuckDB's, same lake)"
    )
    bench.add_argument("--output", type=Path, default=None, help="also write the JSON figures to this file")
    _add_format(bench)
    return parser


def _emit(text_or_obj: object, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(text_or_obj, indent=2, default=str))
    else:
        print(text_or_obj)


def run_command(args: argparse.Namespace) -> int:
    """Dispatch parsed arguments to the owning module. Returns the process exit code."""
    progress = not getattr(args, "no_progress", False)
    if args.command == "synth":
        from medlake.devtools import synth

        summary = synth.generate(
            args.out, exams=args.exams, seed=args.seed, dicom_exams=args.dicom_exams, progress=progress
        )
        print(summary.render())
        return 0
    if args.command == "land":
        from medlake.lake import landing

        summary = landing.land(
            args.input, args.lake, delivery_date=args.delivery_date, workers=args.workers, progress=progress
        )
        _emit(summary.to_dict() if args.format == "json" else summary.render(), args.format)
        return 0
    if args.command == "scan-dicom":
        from medlake.lake import dicom_headers

        summary = dicom_headers.scan_directory(
            args.input, args.lake, delivery_date=args.delivery_date, progress=progress
        )
        print(summary.render())
        return 0
    if args.command == "build":
        from medlake.warehouse import dbt_runner

        dbt_runner.build(
            args.lake, full_refresh=args.full_refresh, select=args.select, docs=not args.no_docs, engine=args.engine
        )
        return 0
    if args.command == "docs":
        from medlake.warehouse import dbt_runner

        dbt_runner.serve_docs(args.lake, port=args.port)
        return 0
    if args.command == "query":
        from medlake.warehouse import queries

        if args.question == "covid-without-pneumonia":
            result = queries.covid_without_pneumonia(
                args.lake, month=args.month, date_basis=args.date_basis, engine=args.engine
            )
        else:
            result = queries.chest_many_labels(
                args.lake, body_part=args.body_part, min_labels=args.min_labels, limit=args.limit, engine=args.engine
            )
        _emit(result.to_dict() if args.format == "json" else result.render(), args.format)
        return 0
    if args.command == "orthanc":
        from medlake.pacs import orthanc_server

        return orthanc_server.cli_action(args.action, port=args.port, storage=args.storage, dicom_port=args.dicom_port)
    if args.command == "pacs":
        from medlake.pacs import loop as pacs

        summary = pacs.run(
            args.input,
            args.lake,
            weights_dir=args.weights_dir,
            allow_untrained=args.allow_untrained_weights,
            workers=args.workers,
            batch_size=args.batch_size,
            results_dir=args.results_dir,
            progress=progress,
        )
        _emit(summary.to_dict() if args.format == "json" else summary.render(), args.format)
        return 0 if summary.ok else 1
    if args.command == "demo":
        from medlake.devtools import demo

        return demo.run(args.workdir, exams=args.exams, seed=args.seed, skip_pacs=args.skip_pacs)
    if args.command == "bench":
        from medlake.devtools import bench

        figures = bench.run(
            exams=args.exams,
            workdir=args.workdir,
            skip_orthanc=args.skip_orthanc,
            skip_torch=args.skip_torch,
            skip_dbt=args.skip_dbt,
            skip_spark=args.skip_spark,
        )
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(figures.to_dict(), indent=2) + "\n")
        _emit(figures.to_dict() if args.format == "json" else figures.render(), args.format)
        return 0
    raise AssertionError(f"unhandled command {args.command}")  # argparse guarantees a known command


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_command(args)
    except MedlakeError as exc:
        print(f"medlake: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("medlake: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
