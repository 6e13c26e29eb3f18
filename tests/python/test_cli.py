"""The command line: every command explains itself and speaks JSON; missing extras are one clear line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from medlake import cli
from medlake.errors import MissingExtraError
from medlake.extras import require_pacs


def leaf_commands(parser=None, prefix=()):
    """Every runnable command line of the real parser, e.g. ("query", "chest-many-labels")."""
    parser = parser or cli.build_parser()
    subparsers = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not subparsers:
        yield prefix
        return
    for name, subparser in subparsers[0].choices.items():
        yield from leaf_commands(subparser, (*prefix, name))


@pytest.mark.parametrize("words", list(leaf_commands()), ids=" ".join)
def test_every_command_has_help_and_a_json_format(words, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([*words, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--format {table,json}" in text


def test_land_and_query_speak_json(neuralmed_dir, tmp_path, capsys):
    lake = tmp_path / "lake"
    assert cli.main(["land", "--input", str(neuralmed_dir), "--lake", str(lake), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows_landed"]["exams"] == 122
    assert cli.main(["scan-dicom", "--input", str(neuralmed_dir), "--lake", str(lake), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["files_seen"] == 202


def test_a_missing_pacs_extra_is_one_line_naming_the_install_command(monkeypatch):
    monkeypatch.setattr("medlake.extras.PACS_MODULES", ("medlake_no_such_module",))
    with pytest.raises(MissingExtraError, match=r"pip install 'medlake\[pacs\]'"):
        require_pacs("medlake pacs run")


def test_help_does_not_import_the_pacs_loop_or_torch():
    code = (
        "import sys; from medlake import cli; cli.build_parser(); print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('torch', 'torchxrayvision', 'highdicom') or m.startswith('medlake.pacs')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
