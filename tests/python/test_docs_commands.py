"""Every command the README and docs/ show is real: parsed by the real CLI parser, and the questions run.

A renamed command or flag fails here, so no page can name a command that does not exist
(``medlake query exams-with-predictions`` was named once and never existed).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from medlake import cli

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The medlake binary as pages spell it; what follows is its argument list.
BINARY = re.compile(r"^(?:\S*/)?medlake\s+")
MENTIONS_BINARY = re.compile(r"(?:^|[\s;&|(])(?:\S*/)?medlake\s")
FENCE = re.compile(r"^```(\w*)\s*$")
INLINE = re.compile(r"`((?:\.venv/bin/)?medlake [a-z][^`]*)`")  # not `medlake 0.1.0`, a version
# An argument a page leaves for the reader: LAKE, [--port P], <dir>, start|stop|status.
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(?:\.\.\.)?$|^\[|^<|\|")


def _shell_lines(text: str):
    """Command lines inside ```bash / ```sh / ```console / ``` fences, continuations joined."""
    in_block, language, pending = False, "", ""
    for line in text.splitlines():
        fence = FENCE.match(line.strip())
        if fence:
            in_block, language = (not in_block, fence.group(1)) if not in_block else (False, "")
            continue
        if not in_block or language not in ("", "bash", "sh", "shell", "console"):
            continue
        line = pending + line.strip().removeprefix("$ ")
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        yield line


def _medlake_invocations(line: str):
    """Each ``medlake ...`` in a shell line (split on && ; |), its trailing comment dropped."""
    words = shlex.split(line, comments=True)
    command: list[str] = []
    for word in [*words, "&&"]:
        if word in ("&&", "||", ";", "|"):
            if command and BINARY.match(command[0] + " "):
                yield command[1:]
            command = []
        else:
            command.append(word)


def documented_commands():
    found = []
    for page in PAGES:
        text = page.read_text()
        for line in _shell_lines(text):
            if not MENTIONS_BINARY.search(line) or line.lstrip().startswith("#"):
                continue
            for argv in _medlake_invocations(line):
                found.append((page.relative_to(ROOT).as_posix(), argv, True))
        for span in INLINE.findall(text):
            argv = shlex.split(BINARY.sub("", span))
            found.append((page.relative_to(ROOT).as_posix(), argv, False))
    return found


COMMANDS = documented_commands()


def test_the_pages_show_commands_at_all():
    assert len({page for page, _, _ in COMMANDS}) >= 4 and len(COMMANDS) >= 30


@pytest.mark.parametrize(("page", "argv", "full"), COMMANDS, ids=[f"{p}: {' '.join(a)}"[:90] for p, a, _ in COMMANDS])
def test_every_documented_command_parses(page, argv, full, capsys):
    """Code blocks: the whole line parses. Inline mentions: the command path up to the first placeholder."""
    if not full:
        argv = [word for word in _until_placeholder(argv)]
        argv = [*argv, "--help"]
    parser = cli.build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as done:
        error = capsys.readouterr().err
        assert done.code == 0, f"{page}: `medlake {' '.join(argv)}` does not parse: {error.strip().splitlines()[-1:]}"


def _until_placeholder(argv):
    for word in argv:
        if PLACEHOLDER.search(word) or word.startswith("-"):
            return
        yield word


def test_the_documented_questions_answer_on_the_real_sample(built_sample_lake):
    """The README's `medlake query ...` lines, run for real on the built real sample."""
    # on DuckDB: the Spark answers are compared with DuckDB's in test_spark_engine
    queries = [argv for _, argv, full in COMMANDS if full and argv[:1] == ["query"] and "spark" not in argv]
    assert queries, "the pages show no query"
    for argv in queries:
        argv = [
            str(built_sample_lake) if previous == "--lake" else word
            for previous, word in zip(["", *argv], argv, strict=False)
        ]
        done = subprocess.run([sys.executable, "-m", "medlake", *argv], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (argv, done.stderr)
        assert "Traceback" not in done.stderr
