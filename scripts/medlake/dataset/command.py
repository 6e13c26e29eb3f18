"""``medlake dataset ...``: the command-line face of :mod:`medlake.dataset` (arguments in, summary out)."""

from __future__ import annotations

import argparse
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
patient. De-identification (default): patient_key is the lake's keyed pseudonym; DICOMs follow the
PS3.15 basic profile (dicognito: names, IDs, dates shifted, UIDs remapped consistently).

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
        "--no-report-files",
        action="store_true",
        help="report texts only in the manifest's report_text column, no reports/*.txt (large exports)",
    )
    export.add_argument("--workers", type=int, default=None, help="processes for DICOM de-identification")
    export.add_argument("--no-progress", action="store_true", help="no progress bar")
    export.add_argument("--format", choices=["table", "json"], default="table", help="summary format")


def run(args: argparse.Namespace) -> int:
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
        report_files=not args.no_report_files,
        workers=args.workers,
        progress=not args.no_progress,
        command=_command_line(args),
    )
    print(json.dumps(summary.to_dict(), indent=2) if args.format == "json" else summary.render())
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The export's command line as given (options left at their defaults omitted), for dataset.json."""
    parts = ["medlake", "dataset", "export"]
    for name, value in vars(args).items():
        if name in ("command", "dataset_action", "format", "no_progress", "workers") or value in (None, False):
            continue
        option = "--" + name.replace("_", "-")
        parts += [option] if value is True else [option, str(value)]
    return shlex.join(parts)
