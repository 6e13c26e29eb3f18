"""Finding and verifying the TorchXRayVision weights ``densenet121-res224-all``.

medlake never downloads weights: the official file must already be on disk, and it is
only trusted when its SHA-256 equals the published one. Where the file is looked for,
first match wins:

1. ``--weights-dir`` (the ``weights_dir`` argument),
2. ``$MEDLAKE_XRV_WEIGHTS_DIR``,
3. TorchXRayVision's own cache, ``xrv.utils.get_cache_dir()`` (``~/.torchxrayvision/models_data``).

Without the official file a run fails (exit code 2) unless the caller allows untrained
weights; then the classifier is a seeded random-init DenseNet-121 of the same shape and
every output it produces is marked UNTRAINED. Its identity is the SHA-256 of its
``state_dict`` (see :func:`medlake.inference.state_dict_sha256`), which is deterministic for
a given torch version because the initialisation is seeded with ``torch.manual_seed(0)``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from medlake.errors import WeightsMismatchError, WeightsNotFoundError

# Set before torch loads (this module is the PACS path's first to import it): OpenMP worker
# threads that spin-wait collapse when a core is shared with decoding threads, Orthanc or any
# other process. Measured on the 2-core dev box with one core busy elsewhere: DenseNet forward
# 2-3 img/s spinning vs 8-11 img/s passive. A user's explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

WEIGHTS_KEY = "densenet121-res224-all"
# Fallbacks for when torchxrayvision's table cannot be read; the table wins when present.
_DEFAULT_FILE_NAME = "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
_RELEASE_URL_BASE = "https://github.com/mlmed/torchxrayvision/releases/download/v1/"
OFFICIAL_SHA256 = "56524913dd16a906422e8d8b66a7a5c46be1d82eb7ac012d8103776f1aa68899"
OFFICIAL_SIZE_BYTES = 28_382_008
WEIGHTS_DIR_ENV = "MEDLAKE_XRV_WEIGHTS_DIR"
UNTRAINED_SEED = 0

_HASH_CHUNK = 1 << 20


def official_url() -> str:
    """The release URL of the official weights (from torchxrayvision's table when importable)."""
    try:
        from torchxrayvision.models import model_urls

        return str(model_urls["all"]["weights_url"])
    except (ImportError, KeyError):
        return _RELEASE_URL_BASE + _DEFAULT_FILE_NAME


def official_file_name() -> str:
    return official_url().rsplit("/", 1)[-1]


def default_cache_dir() -> Path:
    try:
        from torchxrayvision.utils import get_cache_dir

        return Path(get_cache_dir())
    except ImportError:
        return Path("~/.torchxrayvision/models_data").expanduser()


def weights_directory(weights_dir: Path | None = None) -> Path:
    """The one directory a run looks in: the argument, else the env var, else xrv's cache."""
    if weights_dir is not None:
        return Path(weights_dir).expanduser()
    from_env = os.environ.get(WEIGHTS_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return default_cache_dir()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class WeightsChoice:
    """What the classifier will be built from, and why.

    ``trained`` is True only for the verified official file. For untrained weights
    ``file`` is None and the digest is computed from the model itself once it is built.
    """

    trained: bool
    file: Path | None
    file_sha256: str | None
    directory: Path
    reason: str

    def to_dict(self) -> dict:
        return {
            "trained": self.trained,
            "file": str(self.file) if self.file else None,
            "file_sha256": self.file_sha256,
            "directory": str(self.directory),
            "reason": self.reason,
        }


UNTRAINED_LABEL = "UNTRAINED random weights - not for clinical use"


@dataclass(frozen=True)
class ModelIdentity:
    """Who made a prediction: the weights (by digest) and the library that ran them.

    ``weights_sha256`` is the official file's digest for trained weights, and for
    untrained weights the SHA-256 of the seeded model's ``state_dict`` (deterministic).
    ``uid_key`` feeds the deterministic SR UIDs, so the same model on the same image
    always yields the same SR instance and a re-run stores nothing new.
    """

    weights_key: str
    weights_sha256: str
    weights_trained: bool
    weights_file: str | None
    torchxrayvision_version: str
    torch_version: str

    @property
    def name(self) -> str:
        base = f"TorchXRayVision {self.weights_key}"
        return base if self.weights_trained else f"{base} ({UNTRAINED_LABEL})"

    @property
    def version(self) -> str:
        return f"torchxrayvision {self.torchxrayvision_version}"

    @property
    def uid_key(self) -> str:
        trained = "trained" if self.weights_trained else "untrained"
        return f"{self.weights_key}|sha256:{self.weights_sha256}|{trained}|xrv {self.torchxrayvision_version}"

    def describe(self) -> str:
        trained = "official weights" if self.weights_trained else "UNTRAINED random weights (seed 0)"
        return f"{self.name}, {trained}, sha256 {self.weights_sha256[:12]}..., {self.version}"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "weights_key": self.weights_key,
            "weights_file": self.weights_file,
            "weights_sha256": self.weights_sha256,
            "weights_trained": self.weights_trained,
            "torch_version": self.torch_version,
        }


def resolve(weights_dir: Path | None = None, *, allow_untrained: bool = False) -> WeightsChoice:
    """Find and verify the official weights; fall back to untrained only when allowed.

    Raises :class:`WeightsNotFoundError` when the file is absent and
    :class:`WeightsMismatchError` when a file of that name has another digest (both exit
    code 2), unless ``allow_untrained``.
    """
    directory = weights_directory(weights_dir)
    name = official_file_name()
    candidate = directory / name
    if not candidate.is_file():
        if allow_untrained:
            return WeightsChoice(
                trained=False,
                file=None,
                file_sha256=None,
                directory=directory,
                reason=f"official weights not found at {candidate}; using seeded random-init weights (UNTRAINED)",
            )
        raise WeightsNotFoundError(
            f"TorchXRayVision weights {WEIGHTS_KEY} not found: expected {name} in {directory} "
            f"(looked in --weights-dir, else ${WEIGHTS_DIR_ENV}, else xrv's cache). medlake never downloads; "
            f"fetch it yourself from {official_url()} (sha256 {OFFICIAL_SHA256}, {OFFICIAL_SIZE_BYTES:,} B) "
            "and put it there, or pass --allow-untrained-weights for an UNTRAINED pipeline demo."
        )
    digest = sha256_file(candidate)
    if digest == OFFICIAL_SHA256:
        return WeightsChoice(
            trained=True, file=candidate, file_sha256=digest, directory=directory, reason="official weights verified"
        )
    size = candidate.stat().st_size
    mismatch = (
        f"{candidate} has the official name but sha256 {digest} ({size:,} B), not the published "
        f"{OFFICIAL_SHA256} ({OFFICIAL_SIZE_BYTES:,} B): it is not the official {WEIGHTS_KEY} weights"
    )
    if allow_untrained:
        return WeightsChoice(
            trained=False,
            file=None,
            file_sha256=None,
            directory=directory,
            reason=mismatch + "; ignoring it and using seeded random-init weights (UNTRAINED)",
        )
    raise WeightsMismatchError(
        mismatch + ". Replace it with the file from " + official_url() + ", or pass --allow-untrained-weights."
    )
