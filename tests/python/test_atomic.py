"""One atomic, durable write for every file medlake replaces."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from medlake.atomic import PARTIAL_SUFFIX, atomic_path, atomic_write


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "state.json"
    atomic_write(target, '{"seq": 1}\n')
    atomic_write(target, b'{"seq": 2}\n')
    assert target.read_text() == '{"seq": 2}\n'
    assert sorted(path.name for path in target.parent.iterdir()) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "part.parquet"
    atomic_write(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of the new")
        raise RuntimeError("disk full, say")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_a_process_killed_mid_write_leaves_the_old_file_intact(tmp_path):
    """A real SIGKILL while the temporary is being written: the target is the old file, whole."""
    target = tmp_path / "cursor.json"
    atomic_write(target, "old\n")
    code = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from medlake.atomic import atomic_path
        with atomic_path(Path({str(target)!r})) as tmp:
            with open(tmp, "w") as handle:
                handle.write("new, half")
                handle.flush()
                print("writing", flush=True)
                time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert target.read_text() == "old\n"
    leftovers = [path.name for path in tmp_path.iterdir() if path != target]
    assert len(leftovers) == 1 and leftovers[0].endswith(PARTIAL_SUFFIX)  # named as a temporary, never read
