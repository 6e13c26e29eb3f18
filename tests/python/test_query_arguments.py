"""Bad ``medlake query`` arguments end as one clear line, never a traceback (issue 9 item 5).

Each case runs the real CLI entry point on the real sample's warehouse; argparse errors name the
argument, medlake errors are exactly one ``medlake: error:`` line.
"""

from __future__ import annotations

import pytest

from medlake.cli import main

COVID = ("query", "covid-without-pneumonia")
CHEST = ("query", "chest-many-labels")


@pytest.mark.parametrize(
    "arguments",
    [
        COVID + ("--month", "9999-12"),
        COVID + ("--month", "10000-01"),
        COVID + ("--month", "0000-01"),
        COVID + ("--month", "2021-13"),
        COVID + ("--month", ""),
        COVID + ("--month", "2021-12", "--date-basis", "delivery"),
        CHEST + ("--limit", "99999999999999999999999"),
        CHEST + ("--min-labels", "99999999999999999999"),
        CHEST + ("--limit", "abc"),
        CHEST + ("--limit", "0"),
        CHEST + ("--body-part", " "),
        CHEST + ("--body-part", "caf\udce9"),  # a non-UTF-8 byte from the shell
        CHEST + ("--body-part", "x" * 10_000),
    ],
    ids=lambda arguments: " ".join(arguments[2:])[:40],
)
def test_bad_query_arguments_give_one_clear_line(built_sample_lake, capsys, arguments):
    try:
        exit_code = main([*arguments, "--lake", str(built_sample_lake)])
    except SystemExit as exc:  # argparse: usage line + one error line naming the argument
        exit_code = exc.code
        error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(error_lines) == 1 and "argument" in error_lines[0], error_lines
    else:
        err = capsys.readouterr().err
        if exit_code == 0:  # a long body part is only a body part that matches nothing
            assert arguments[-1] == "x" * 10_000
            return
        assert err.count("\n") == 1 and err.startswith("medlake: error: "), err
    assert exit_code not in (0, None)


@pytest.mark.parametrize("lake_kind", ["missing", "a file", "not a warehouse"])
def test_query_on_a_bad_lake_gives_one_clear_line(tmp_path, capsys, lake_kind):
    lake = tmp_path / "lake"
    if lake_kind == "a file":
        lake.write_text("not a lake")
    elif lake_kind == "not a warehouse":
        lake.mkdir()
        (lake / "medlake.duckdb").write_text("not a DuckDB file")
    exit_code = main([*COVID, "--month", "2021-12", "--lake", str(lake)])
    err = capsys.readouterr().err
    assert exit_code != 0
    assert err.count("\n") == 1 and err.startswith("medlake: error: "), err
