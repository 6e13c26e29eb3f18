"""Child processes that do not outlive the medlake command that started them.

A SIGKILLed parent runs no cleanup, so its children must notice on their own: on Linux the
kernel sends them a signal when the parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere,
and for the moment between fork and prctl, a watchdog thread checks the parent pid. Used by
``land``'s worker processes (as the pool initializer); :func:`die_with_parent` also works as
a ``subprocess`` ``preexec_fn`` for external children (e.g. dbt).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
_WATCH_SECONDS = 1.0


def _set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent dies; False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(_WATCH_SECONDS)


def die_with_parent(parent_pid: int | None = None, *, watchdog: bool = True) -> None:
    """Make the calling (child) process exit when ``parent_pid`` (default: its parent now) dies.

    Call it first thing in the child. ``watchdog=False`` for a ``preexec_fn`` (no threads there).
    """
    expected = parent_pid if parent_pid is not None else os.getppid()
    armed = _set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != expected:  # the parent died before the signal was armed
        os._exit(1)
    if watchdog and not armed:
        threading.Thread(target=_watch_parent, args=(expected,), name="medlake-parent-watch", daemon=True).start()
