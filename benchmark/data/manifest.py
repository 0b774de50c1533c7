"""Data-set manifests: one YAML file per data set under ``tasks/datasets/``.

A manifest names where a data set lives under the data root (``path``), where its
canonical copy comes from (``url``, ``source``), its sha256, format, record count and
licence. The schema is strict (unknown keys are errors); every error names the
manifest file and the field.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from benchmark.core import settings
from benchmark.core.errors import DataError

#: Record formats the suite knows. Editing formats have record-level validators in
#: :mod:`benchmark.data.loaders`; the general-ability ones are read by lm-eval tasks.
Format = Literal[
    "counterfact-easyedit",  # JSON list: case_id, prompt, subject, target_new, ground_truth, rephrase_prompt, ...
    "counterfact-rome",  # JSON list: case_id, requested_rewrite{prompt "{}"}, paraphrase_prompts, ...
    "zsre-mend",  # JSON list: subject, src, pred, rephrase, alt, answers, loc, loc_ans
    "mquake",  # JSON list of cases: case_id, requested_rewrite[...], questions, answer, new_answer, ...
    "json",  # one JSON document (list or dict)
    "jsonl",  # one JSON object per line
    "tsv",  # tab-separated with a header line
    "csv-dir",  # a directory of CSV files (``members``)
    "lines",  # one plain-text value per line
    "text",  # raw text
    "npy",  # a NumPy array
]

#: How a fetched file becomes the file under the data root.
Transform = Literal["none", "pickle-to-json"]

_SHA = r"^[0-9a-f]{64}$"


class SourceRef(BaseModel):
    """The public repository a file comes from (for provenance; ``url`` is what is fetched)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    repo: str = Field(min_length=1)
    commit: str = Field(pattern=r"^[0-9a-f]{7,40}$")
    path: str = Field(min_length=1)


class DatasetManifest(BaseModel):
    """One data set. ``path`` is relative to the data root; for ``csv-dir`` it is a folder,
    ``members`` lists its files and ``sha256`` is the tree hash (see
    :func:`benchmark.data.store.tree_sha256`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str = Field(min_length=1)
    path: str = Field(min_length=1)
    url: str = Field(pattern=r"^https://")
    source: SourceRef | None = None
    #: Pinned sha256 of the file as stored under the data root (None: unpinned upstream file;
    #: ``fetch`` logs the hash it got and ``verify`` only checks existence).
    sha256: str | None = Field(default=None, pattern=_SHA)
    size: int | None = Field(default=None, ge=0)
    format: Format
    records: int | None = Field(default=None, ge=0)
    licence: str = Field(min_length=1)
    #: True when the offline mirror (../shared/data) holds the file.
    mirrored: bool
    transform: Transform = "none"
    members: tuple[str, ...] = ()
    #: 0-based indices of upstream records known to be malformed (e.g. an empty target);
    #: loaders drop them, logging each, instead of failing. Any other bad record is an error.
    exclude_records: tuple[int, ...] = ()
    notes: str | None = None

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        p = Path(v)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError("must be a relative path inside the data root (no '..')")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DatasetManifest:
        if self.format == "csv-dir" and not self.members:
            raise ValueError("format csv-dir needs 'members' (the files of the folder)")
        if self.format != "csv-dir" and self.members:
            raise ValueError("'members' is only for format csv-dir")
        if self.mirrored and self.sha256 is None:
            raise ValueError("a mirrored data set must pin its sha256")
        return self

    @property
    def is_dir(self) -> bool:
        return self.format == "csv-dir"


def manifest_dir(explicit: str | Path | None = None) -> Path:
    """The folder of manifests: ``explicit`` or ``tasks/datasets`` in the repository."""
    return Path(explicit) if explicit is not None else settings.TASKS_DIR / "datasets"


def _pydantic_message(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key (the manifest schema forbids extra keys)"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more error{'s' if more > 1 else ''})"
    return field, msg


def parse_manifest(file: Path) -> DatasetManifest:
    """Read and validate one manifest YAML; DataError names the file and the field."""
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(file, f"invalid YAML: {exc}") from None
    except OSError as exc:
        raise DataError(file, f"cannot read manifest: {exc}") from None
    if not isinstance(raw, dict):
        raise DataError(file, f"a manifest must be a mapping, got {type(raw).__name__}")
    try:
        m = DatasetManifest.model_validate(raw)
    except ValidationError as exc:
        field, msg = _pydantic_message(exc)
        raise DataError(file, msg, field=field) from None
    if m.name != file.stem:
        raise DataError(file, f"name {m.name!r} differs from the file name {file.stem!r}", field="name")
    return m


def _load_all(directory: Path) -> dict[str, DatasetManifest]:
    if not directory.is_dir():
        raise DataError(directory, "manifest folder not found")
    files = sorted(directory.glob("*.yaml"))
    # cache keyed by every input: the folder and each file's name, size and mtime
    signature = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _parse_all(directory, signature)


@functools.lru_cache(maxsize=16)
def _parse_all(directory: Path, signature: tuple) -> dict[str, DatasetManifest]:
    out: dict[str, DatasetManifest] = {}
    for name, _size, _mtime in signature:
        m = parse_manifest(directory / name)
        out[m.name] = m
    return out


def load_manifests(directory: str | Path | None = None) -> dict[str, DatasetManifest]:
    """Every manifest in ``directory`` (default tasks/datasets), by name."""
    return dict(_load_all(manifest_dir(directory).resolve()))


def get_manifest(name: str, directory: str | Path | None = None) -> DatasetManifest:
    """The manifest called ``name``; UnknownName (with did-you-mean) otherwise."""
    from benchmark.core.registry import UnknownName

    all_ = _load_all(manifest_dir(directory).resolve())
    if name not in all_:
        raise UnknownName("data set", name, list(all_))
    return all_[name]
