"""What each ``medlake`` command does: hand the parsed arguments to the module that owns the work.

One function per row of :data:`medlake.cli.COMMANDS`, each returning the exit code. Imports
happen inside the functions: a lake-only install runs ``land`` without the PACS extra, and
a PACS command without it stops with one line naming ``pip install 'medlake[pacs]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from medlake.extras import require_pacs


def emit(result: Any, fmt: str) -> None:
    """Print a result as a table (its ``render()``) or JSON (its ``to_dict()``, or the object itself)."""
    if fmt == "json":
        data = result.to_dict() if hasattr(result, "to_dict") else result
        print(json.dumps(data, indent=2, default=str))
    else:
        print(result.render() if hasattr(result, "render") else result)


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "no_progress", False) and args.format != "json"


def synth(args: argparse.Namespace) -> int:
    from medlake.devtools import synth as synthetic

    summary = synthetic.generate(
        args.out,
        exams=args.exams,
        seed=args.seed,
        dicom_exams=args.dicom_exams,
        progress=_progress(args),
        records_per_file=args.records_per_file or 0,
    )
    emit(summary, args.format)
    return 0


def land(args: argparse.Namespace) -> int:
    from medlake.lake import landing

    summary = landing.land(
        args.input, args.lake, delivery_date=args.delivery_date, workers=args.workers, progress=_progress(args)
    )
    emit(summary, args.format)
    return 0


def scan_dicom(args: argparse.Namespace) -> int:
    from medlake.lake import scanning

    summary = scanning.scan_directory(args.input, args.lake, delivery_date=args.delivery_date, progress=_progress(args))
    emit(summary, args.format)
    return 0


def build(args: argparse.Namespace) -> int:
    from medlake.warehouse import dbt_runner

    quiet = args.format == "json"  # dbt's own log would break the JSON on stdout
    summary = dbt_runner.build(
        args.lake,
        full_refresh=args.full_refresh,
        select=args.select,
        docs=not args.no_docs,
        quiet=quiet,
        engine=args.engine,
        include_patient_id=args.include_patient_id,
    )
    if quiet:
        emit(summary, args.format)
    return 0


def docs(args: argparse.Namespace) -> int:
    from medlake.warehouse import dbt_runner

    if args.format == "json":
        emit({"lake": str(args.lake), "url": f"http://127.0.0.1:{args.port}"}, "json")
    dbt_runner.serve_docs(args.lake, port=args.port)
    return 0


def query_covid_without_pneumonia(args: argparse.Namespace) -> int:
    from medlake.warehouse import queries

    answer = queries.covid_without_pneumonia(
        args.lake, month=args.month, date_basis=args.date_basis, engine=args.engine
    )
    emit(answer, args.format)
    return 0


def query_chest_many_labels(args: argparse.Namespace) -> int:
    from medlake.warehouse import queries

    result = queries.chest_many_labels(
        args.lake, body_part=args.body_part, min_labels=args.min_labels, limit=args.limit, engine=args.engine
    )
    emit(result, args.format)
    return 0


def orthanc(args: argparse.Namespace) -> int:
    require_pacs("medlake orthanc")
    from medlake.pacs.orthanc import cli as orthanc_cli

    return orthanc_cli.cli_action(
        args.action,
        port=args.port,
        storage=args.storage,
        dicom_port=args.dicom_port,
        aet=args.aet,
        modalities=args.modality,
        modalities_files=args.modalities_file,
        stable_age_s=args.stable_age,
        fmt=args.format,
    )


def dataset(args: argparse.Namespace) -> int:
    from medlake.dataset import command

    return command.run(args)


def _pacs_options(args: argparse.Namespace) -> dict[str, Any]:
    from medlake.pacs.gate import GatePolicy

    return {
        "weights_dir": args.weights_dir,
        "allow_untrained": args.allow_untrained_weights,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "land_batch": args.land_batch,
        "sr_workers": args.sr_workers,
        "results_dir": args.results_dir,
        "progress": _progress(args),
        "policy": GatePolicy(
            allow_lateral="lateral" in args.allow_view,
            require_body_part=args.require_body_part,
            require_view=args.require_view,
            min_age_years=args.min_age_years,
        ),
        "breaker_threshold": args.max_connection_failures,
    }


def _pacs_exit(summary: Any, fmt: str) -> int:
    emit(summary, fmt)
    if summary.status == "orthanc_unreachable":
        print(f"error: {summary.stop_reason}. Re-run once Orthanc is back: it resumes.", file=sys.stderr)
        return 3
    return 0 if summary.ok else 1


def pacs_run(args: argparse.Namespace) -> int:
    require_pacs("medlake pacs run")
    from medlake.pacs.loop import run as loop

    return _pacs_exit(loop.run(args.input, args.lake, **_pacs_options(args)), args.format)


def pacs_watch(args: argparse.Namespace) -> int:
    require_pacs("medlake pacs watch")
    from medlake.pacs.loop import watch

    summary = watch.watch(
        args.lake,
        once=args.once,
        level=args.level,
        since=args.since,
        poll_s=args.poll_seconds,
        page_size=args.page_size,
        **_pacs_options(args),
    )
    return _pacs_exit(summary, args.format)


def demo(args: argparse.Namespace) -> int:
    if not args.skip_pacs:
        require_pacs("medlake demo (without --skip-pacs)")
    from medlake.devtools import demo as main_job

    def run() -> int:
        return main_job.run(args.workdir, exams=args.exams, seed=args.seed, skip_pacs=args.skip_pacs)

    if args.format != "json":
        return run()
    with contextlib.redirect_stdout(sys.stderr):
        code = run()
    emit({"workdir": str(args.workdir), "lake": str(args.workdir / "lake"), "exit_code": code}, "json")
    return code


def _smaller_run(output: Path | None, exams: int) -> Path | None:
    """``results/bench-N.json`` beside ``--output results/bench-10N.json``: the run to report growth from."""
    if output is None or exams % 10 or output.name != f"bench-{exams}.json":
        return None
    return output.with_name(f"bench-{exams // 10}.json")


def bench(args: argparse.Namespace) -> int:
    if not (args.skip_torch and args.skip_orthanc):
        require_pacs("medlake bench (without --skip-torch --skip-orthanc)")
    from medlake.devtools import bench as benchmarks

    figures = benchmarks.run(
        exams=args.exams,
        workdir=args.workdir,
        skip_orthanc=args.skip_orthanc,
        skip_torch=args.skip_torch,
        skip_dbt=args.skip_dbt,
        skip_spark=args.skip_spark,
        records_per_file=args.records_per_file or 0,
        partial_output=args.output.with_suffix(".partial.json") if args.output else None,
    )
    if args.output:
        args.output.with_suffix(".partial.json").unlink(missing_ok=True)
    smaller = args.growth_from or _smaller_run(args.output, args.exams)
    if smaller is not None and smaller.is_file():
        benchmarks.add_growth(figures, json.loads(smaller.read_text()), str(smaller))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(figures.to_dict(), indent=2) + "\n")
    emit(figures, args.format)
    return 0
