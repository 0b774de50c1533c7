"""Process-wide settings: data root, cache root, offline mode, repository paths.

Every path the suite reads or writes is derived here from an explicit setting or
environment variable, never from the current working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the data root (CI points it at ../shared/data).
DATA_ENV = "SEQEDIT_DATA"
#: Environment variable naming the cache root (converted models, layer statistics, ...).
CACHE_ENV = "SEQEDIT_CACHE"
#: Set to "0" to allow network access (hub models, canonical data URLs).
OFFLINE_ENV = "SEQEDIT_OFFLINE"

PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: Repository root (the suite is installed editable; tasks/ and results/ live here).
REPO_ROOT = PACKAGE_DIR.parent
TASKS_DIR = REPO_ROOT / "tasks"
RESULTS_DIR = REPO_ROOT / "results"
GRIDS_DIR = PACKAGE_DIR / "grids"


class SettingError(RuntimeError):
    """A required setting is missing or points nowhere."""


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root: ``explicit`` if given, else ``$SEQEDIT_DATA``.

    Raises SettingError naming the variable when neither is set or the folder is missing.
    """
    raw = explicit if explicit is not None else os.environ.get(DATA_ENV)
    if not raw:
        raise SettingError(
            f"no data root set: pass --data-root or set {DATA_ENV} "
            "(for a checkout with ../shared beside it: export "
            f"{DATA_ENV}=$(realpath ../shared/data))"
        )
    root = Path(raw).expanduser().resolve()
    if not root.is_dir():
        raise SettingError(f"data root {root} (from {DATA_ENV} or --data-root) is not a directory")
    return root


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """The cache root: ``explicit``, else ``$SEQEDIT_CACHE``, else ``~/.cache/seqedit-bench``.

    Created if missing; raises SettingError naming the folder and where it came from when
    it cannot be created (a read-only filesystem, a file in the way, no permission).
    """
    raw = explicit if explicit is not None else os.environ.get(CACHE_ENV)
    root = Path(raw).expanduser() if raw else Path.home() / ".cache" / "seqedit-bench"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        origin = ("--cache-root" if explicit is not None else f"${CACHE_ENV}" if raw
                  else f"the default, as {CACHE_ENV} is not set")
        raise SettingError(f"cache root {root} (from {origin}) cannot be created: "
                           f"{exc.strerror or exc}; set {CACHE_ENV} to a writable folder") from None
    return root.resolve()


def offline() -> bool:
    """True unless SEQEDIT_OFFLINE=0. Offline runs also set the Hugging Face offline flags."""
    return os.environ.get(OFFLINE_ENV, "1") != "0"


def apply_offline_env() -> None:
    """Make Hugging Face libraries fail fast instead of trying the network when offline."""
    if offline():
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(var, "1")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


class NetworkRequired(RuntimeError):
    """Raised when an offline run would need the network."""


def require_network(what: str) -> None:
    if offline():
        raise NetworkRequired(
            f"{what} needs the network, but this run is offline ({OFFLINE_ENV} is not 0). "
            f"On a networked machine set {OFFLINE_ENV}=0; offline, use an embedded model "
            "(smollm2-135m, gemma3-270m) or data under the data root."
        )
