"""Who may read what medlake writes: nobody but its user, unless a team opts in.

Every entry point that writes (the CLI, and library calls such as ``dbt_runner.build``) sets the
process umask with :func:`restrict_umask` before creating anything, so the warehouse, raw Parquet,
results JSON, logs and dbt's target directory are created without any permission for other users
(0600 files, 0700 folders). A team that shares a lake sets ``MEDLAKE_UMASK=007`` (group members
read and write, others nothing) and works in a setgid folder owned by the team's group; 'other'
bits are masked whatever the variable says.
"""

from __future__ import annotations

import os

from medlake.errors import MedlakeError

UMASK_ENV_VAR = "MEDLAKE_UMASK"
DEFAULT_UMASK = 0o077
# Never grant anything to users outside the owner and the group.
ALWAYS_MASKED = 0o007


def configured_umask() -> int:
    """The umask medlake runs under: ``MEDLAKE_UMASK`` (octal) or 077; 'other' always masked."""
    text = os.environ.get(UMASK_ENV_VAR, "").strip()
    if not text:
        return DEFAULT_UMASK
    try:
        value = int(text, 8)
    except ValueError:
        raise MedlakeError(f"{UMASK_ENV_VAR} must be an octal umask such as 077 or 007, got {text!r}") from None
    if not 0 <= value <= 0o777:
        raise MedlakeError(f"{UMASK_ENV_VAR} must be between 000 and 777, got {text!r}")
    return value | ALWAYS_MASKED


def restrict_umask() -> int:
    """Set the process umask medlake writes under; returns it.

    Without ``MEDLAKE_UMASK`` the caller's umask is only ever tightened (its bits plus 077); with
    it, the team's value is used as given (plus 007).
    """
    wanted = configured_umask()
    current = os.umask(wanted)
    if not os.environ.get(UMASK_ENV_VAR, "").strip() and current | wanted != wanted:
        wanted = current | wanted  # the caller's umask was stricter still: keep its extra bits
        os.umask(wanted)
    return wanted
