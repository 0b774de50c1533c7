"""Data sets: manifests, verified paths under the data root, and edit-request loaders.

Public API (import from ``benchmark.data``):

- ``resolve(name, *, data_root=None, manifest_dir=None) -> Path`` -- the file (or folder,
  for ``mmlu``) of data set ``name`` under the data root (``benchmark.core.settings.data_root()``,
  i.e. ``$SEQEDIT_DATA``), after checking it exists and its sha256 matches the manifest.
  Verification is cached by (path, size, mtime, sha256), so repeat calls are cheap.
  A missing file raises ``MissingData`` (a DataError) naming SEQEDIT_DATA, the expected
  path and the canonical URL; a wrong hash raises ``ChecksumMismatch``.
- ``get_manifest(name) -> DatasetManifest`` / ``load_manifests() -> dict`` -- the typed
  manifests in ``tasks/datasets/<name>.yaml`` (fields: name, description, path, url, source,
  sha256, size, format, records, licence, mirrored, transform, members, notes).
- ``fetch(name)`` -- download + verify (networked machines only: needs SEQEDIT_OFFLINE=0;
  offline it raises settings.NetworkRequired without opening a connection).
- ``load_requests(dataset, split=None, limit=None) -> list[EditRequest]`` for
  ``counterfact`` (EasyEdit splits edit/train/val), ``counterfact-rome``, ``zsre``
  (splits eval/train-1k) and ``mquake`` (split hard; one request per requested rewrite).
  ``dataset`` may also be a manifest name (``counterfact-edit``); ``path=`` reads a file
  directly (with ``format=``). Every record is validated before anything is returned.
- ``first_requests(dataset, split, n, offset=0)`` -- exactly ``n`` requests from ``offset``;
  a data set holding fewer is a DataError naming it and its size.
- ``load_mquake_cases(split="hard", limit=None) -> list[MquakeCase]`` -- multi-hop cases.

Data set names (general abilities for lm-eval tasks): prune-reasoning, prune-summarization,
prune-qa, prune-nli, gsm8k-test, nq-open-dev, boolq-dev, piqa-valid, piqa-valid-labels,
mmlu (a folder with dev/ and test/ CSVs), glue-{sst2,mrpc,cola,rte,mmlu,nli,
sentiment-analysis,dialogue}, wikitext2-test. Run ``seqedit data list`` for all.
"""

from __future__ import annotations

from benchmark.data.loaders import (
    MquakeCase,
    first_requests,
    load_mquake_cases,
    load_records,
    load_requests,
)
from benchmark.data.manifest import DatasetManifest, get_manifest, load_manifests, manifest_dir
from benchmark.data.store import (
    ChecksumMismatch,
    MissingData,
    clear_verification_cache,
    fetch,
    resolve,
    tree_sha256,
    verify,
)

__all__ = [
    "ChecksumMismatch", "DatasetManifest", "MissingData", "MquakeCase", "clear_verification_cache",
    "fetch", "first_requests", "get_manifest", "load_manifests", "load_mquake_cases", "load_records",
    "load_requests", "manifest_dir", "resolve", "tree_sha256", "verify",
]
