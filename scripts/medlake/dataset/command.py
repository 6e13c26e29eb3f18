"""``medlake dataset ...``: the command-line face of :mod:`medlake.dataset` (arguments in, summary out)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shlex
from pathlib import Path

DESCRIPTION = """\
Export a training set: the lake's exams filtered by labels, body part, dates and source, split
train/val/test by patient, with their images and reports, de-identified by default.

Label columns follow the CheXpert convention: 1 positive, 0 negative, -1 uncertain (the exam's
assertions contradict), empty when the exam has no assertion of that label. Only exams with at
least one assertion of one of the --labels are exported (unless --include-unlabelled).

Splits are by patient (the exam where no patient is known): a hash of the seed and the patient's
pseudonym picks the split, so a re-export gives the same split and later exams never move a
patient.

De-identification (default): patient_key is the lake's keyed pseudonym; DICOMs follow the PS3.15
Basic Application Level Confidentiality Profile's action table with the Retain Longitudinal
Temporal Information with Modified Dates option (one date offset per patient) and Clean
Descriptors (kept only when provably clean); PNG/JPEG are re-encoded from their pixels; PDFs and
other documents are left out (--include-documents to add them unchanged); the source column is
left out (--include-source); report texts are scrubbed of every identifier the lake knows for the
exam, which does NOT make free text guaranteed PHI-free. Before the export is published a PHI
check searches every file for the identifiers the lake holds and refuses, naming file and field.
`medlake dataset verify-deid DIR --lake LAKE` runs that check on any export.

example:
  medlake dataset export --lake data/lake --out data/sets/chest-v1 \\
      --labels Covid,Pneumonia --body-part Chest --require-image --split 0.8,0.1,0.1 --seed 7
"""


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def add_parser(commands: argparse._SubParsersAction, default_lake: Path) -> None:
    """Register ``medlake dataset export`` on the CLI's sub-command table."""
    dataset = commands.add_parser("dataset", help="training sets: export a filtered, split, de-identified set")
    actions = dataset.add_subparsers(dest="dataset_action", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="write manifest.parquet, images/, reports/, dataset.json and DATASET.md for a label filter",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--lake", type=Path, default=default_lake, help="lake directory (built with medlake build)")
    export.add_argument("--out", type=Path, required=True, help="export directory (created, or a previous export)")
    export.add_argument("--labels", default=None, help="label columns, e.g. Covid,Pneumonia (default: every label)")
    export.add_argument("--body-part", default=None, help="canonical body part, e.g. Chest (case-insensitive)")
    export.add_argument("--published-from", type=_date, default=None, help="first publication day, YYYY-MM-DD (UTC)")
    export.add_argument("--published-to", type=_date, default=None, help="last publication day, inclusive (UTC)")
    export.add_argument("--source", default=None, help="exam source(s), comma-separated (case-insensitive)")
    export.add_argument("--require-image", action="store_true", help="only exams whose image could be exported")
    export.add_argument(
        "--with-predictions",
        metavar="MODEL",
        default=None,
        help="only images MODEL scored; adds pred_<label> score columns",
    )
    export.add_argument(
        "--include-unlabelled",
        action="store_true",
        help="also exams with no assertion of any of the labels (all label columns empty)",
    )
    export.add_argument("--split", default="0.8,0.1,0.1", help="train,val,test shares (default 0.8,0.1,0.1)")
    export.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    export.add_argument(
        "--no-deidentify",
        action="store_true",
        help="keep identifiers (patient_id column, original DICOMs): in-hospital use only",
    )
    export.add_argument(
        "--include-documents",
        action="store_true",
        help="also export PDFs and other documents UNCHANGED (they cannot be de-identified; recorded)",
    )
    export.add_argument(
        "--include-source",
        action="store_true",
        help="keep the source (institution) column in a de-identified export (recorded)",
    )
    export.add_argument(
        "--no-report-files",
        action="store_true",
        help="report texts only in the manifest's report_text column, no reports/*.txt (large exports)",
    )
    export.add_argument("--workers", type=int, default=None, help="processes for DICOM de-identification")
    export.add_argument("--no-progress", action="store_true", help="no progress bar")
    export.add_argument("--format", choices=["table", "json"], default="table", help="summary format")
    verify = actions.add_parser(
        "verify-deid",
        help="search an export for every identifier the lake holds for its patients",
        description="Search every file of the export DIR for the identifiers LAKE holds for the exported "
        "patients (names, IDs, accession numbers, birth dates, real exam dates, institution, staff names): "
        "the check every de-identified export passes before it is published. Exit 0 when none is found; "
        "otherwise each finding names the file, the field and the kind of identifier (never the value).",
    )
    verify.add_argument("directory", type=Path, metavar="DIR", help="an export made by medlake dataset export")
    verify.add_argument("--lake", type=Path, default=default_lake, help="the lake the export came from")
    verify.add_argument("--format", choices=["table", "json"], default="table", help="result format")


def run(args: argparse.Namespace) -> int:
    if args.dataset_action == "verify-deid":
        return _verify(args)
    from medlake.dataset.export import export_dataset
    from medlake.dataset.filters import ExportFilters
    from medlake.dataset.splits import SplitSpec

    filters = ExportFilters(
        labels=ExportFilters.split_list(args.labels),
        body_part=args.body_part,
        published_from=args.published_from,
        published_to=args.published_to,
        sources=ExportFilters.split_list(args.source),
        require_image=args.require_image,
        with_predictions=args.with_predictions,
        include_unlabelled=args.include_unlabelled,
    )
    summary = export_dataset(
        args.lake,
        args.out,
        filters=filters,
        split=SplitSpec.parse(args.split, seed=args.seed),
        deidentify=not args.no_deidentify,
        include_documents=args.include_documents,
        include_source=args.include_source,
        report_files=not args.no_report_files,
        workers=args.workers,
        progress=not args.no_progress,
        command=_command_line(args),
    )
    print(json.dumps(summary.to_dict(), indent=2) if args.format == "json" else summary.render())
    return 0


def _verify(args: argparse.Namespace) -> int:
    from medlake.dataset.verify import verify_export

    findings = verify_export(args.directory, args.lake)
    if args.format == "json":
        document = {"directory": str(args.directory), "clean": not findings}
        document["findings"] = [dataclasses.asdict(finding) for finding in findings]
        print(json.dumps(document, indent=2))
    elif findings:
        print(f"{len(findings)} identifier(s) the lake knows found in {args.directory}:")
        for finding in findings:
            print(f"  {finding}")
    else:
        print(f"{args.directory}: no identifier the lake holds for its patients was found")
    return 0 if not findings else 3


def _command_line(args: argparse.Namespace) -> str:
    """The export's command line as given (options left at their defaults omitted), for dataset.json."""
    parts = ["medlake", "dataset", "export"]
    for name, value in vars(args).items():
        if name in ("command", "dataset_action", "format", "no_progress", "workers") or value in (None, False):
            continue
        if name == "source" and not args.no_deidentify and not args.include_source:
            value = "[withheld]"  # an institution's name stays out of a de-identified export's card
        option = "--" + name.replace("_", "-")
        parts += [option] if value is True else [option, str(value)]
    return shlex.join(parts)
