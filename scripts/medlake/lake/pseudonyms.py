"""Keyed pseudonyms for patient identifiers (HMAC-SHA-256).

Marts, query output and training-set exports carry ``pseudonymise(key, patient_id)`` instead of
the identifier itself; the raw layer keeps what arrived. The key is secret and per lake: taken
from ``MEDLAKE_PSEUDONYM_KEY`` (hex, at least 32 bytes) when set, otherwise read from
``LAKE/keys/pseudonym.key`` (created mode 0600 on first use, in a 0700 folder). The same key
gives the same pseudonym on every build and export, so training-set splits by patient are stable;
without the key a pseudonym cannot be linked back to the patient.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from medlake.errors import LakeError

KEY_ENV_VAR = "MEDLAKE_PSEUDONYM_KEY"
KEY_RELATIVE_PATH = Path("keys") / "pseudonym.key"
KEY_BYTES = 32
PSEUDONYM_PREFIX = "pt_"
STAFF_PSEUDONYM_PREFIX = "st_"
# Staff names are hashed in their own domain: a staff pseudonym never equals a patient's.
STAFF_DOMAIN = b"medlake staff\x00"
# 128 bits of the HMAC: collision-free at any hospital's scale, short enough to read in a table.
PSEUDONYM_HEX_CHARS = 32


def key_path(lake: Path) -> Path:
    return Path(lake) / KEY_RELATIVE_PATH


def pseudonym_key(lake: Path, *, create: bool = True) -> bytes:
    """The lake's pseudonymisation key: from the environment, else the key file (created if asked)."""
    from_env = os.environ.get(KEY_ENV_VAR)
    if from_env:
        try:
            key = bytes.fromhex(from_env.strip())
        except ValueError as exc:
            raise LakeError(f"{KEY_ENV_VAR} must be hex-encoded") from exc
        if len(key) < KEY_BYTES:
            raise LakeError(f"{KEY_ENV_VAR} must hold at least {KEY_BYTES} bytes ({2 * KEY_BYTES} hex characters)")
        return key
    path = key_path(lake)
    if path.exists():
        key = bytes.fromhex(path.read_text().strip())
        if len(key) < KEY_BYTES:
            raise LakeError(f"{path} holds a key shorter than {KEY_BYTES} bytes")
        return key
    if not create:
        raise LakeError(f"no pseudonymisation key at {path} and {KEY_ENV_VAR} is not set")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    key = secrets.token_bytes(KEY_BYTES)
    try:
        # O_EXCL: two processes creating the key at once must not end up with two keys.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return pseudonym_key(lake, create=False)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
    return key


def pseudonymise(key: bytes, value: str | None) -> str | None:
    """``pt_`` + the first 32 hex characters of HMAC-SHA-256(key, value); None stays None."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    digest = hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_CHARS]


def pseudonymise_staff(key: bytes, name: str | None) -> str | None:
    """``st_`` + 32 hex of HMAC-SHA-256(key, staff domain + name): labellers and reporters in marts."""
    if name is None:
        return None
    text = str(name).strip()
    if not text:
        return None
    digest = hmac.new(key, STAFF_DOMAIN + text.encode("utf-8"), hashlib.sha256).hexdigest()
    return STAFF_PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_CHARS]
