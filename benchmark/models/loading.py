"""Loading a registered model: random configs, hub repositories, embedded GGUF packages."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path

import torch

from benchmark.core import io, settings
from benchmark.core.arch import (
    EmbeddedSource,
    HubSource,
    LoadedModel,
    LocalSource,
    ModelEntry,
    RandomSource,
)
from benchmark.core.errors import DataError
from benchmark.core.modelref import is_ref
from benchmark.models.entries import get_entry
from benchmark.models.tokenizer import byte_tokenizer

log = logging.getLogger(__name__)


def load(name: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
         cache_dir: str | Path | None = None) -> LoadedModel:
    """Load a model in eval mode on ``device``: a registry name, ``hf:ID@REV`` or ``path:DIR``."""
    settings.apply_offline_env()
    entry = get_entry(name)
    src = entry.source
    if isinstance(src, RandomSource):
        loaded = _load_random(entry, src)
    elif isinstance(src, EmbeddedSource):
        loaded = _load_embedded(entry, src, settings.cache_root(cache_dir))
    elif isinstance(src, LocalSource):
        loaded = _load_local(entry, src, dtype)
    else:
        loaded = _load_hub(entry, src, dtype)
    if is_ref(name):
        loaded.entry = _with_measured_bos(loaded)
    loaded.model.to(device=device, dtype=dtype)
    loaded.model.eval()
    loaded.model.requires_grad_(False)
    tok = loaded.tokenizer
    tok.padding_side = entry.arch.padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return loaded


def _with_measured_bos(loaded: LoadedModel) -> ModelEntry:
    """The entry with ``adds_bos`` as the loaded tokenizer behaves. The architecture table
    gives the family's usual tokenizer; a checkpoint's own tokenizer decides."""
    tok, entry = loaded.tokenizer, loaded.entry
    if tok.bos_token_id is None:
        measured = False
    else:
        ids = tok("a")["input_ids"]
        measured = bool(ids) and ids[0] == tok.bos_token_id
    if measured == entry.arch.adds_bos:
        return entry
    log.warning("model %s: its tokenizer %s BOS, unlike the %s table row; following the tokenizer",
                entry.name, "adds" if measured else "does not add", entry.arch.family)
    return dataclasses.replace(entry, arch=dataclasses.replace(entry.arch, adds_bos=measured))


def _load_local(entry: ModelEntry, src: LocalSource, dtype: torch.dtype) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(src.path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise DataError(src.path, f"no usable tokenizer in the model folder: {exc}") from exc
    model = AutoModelForCausalLM.from_pretrained(src.path, dtype=dtype, local_files_only=True)
    identity = {"name": entry.name, "source": "path", "path": src.path,
                "weights_sha256": dict(src.weights_sha256), "config_sha256": src.config_sha256}
    return LoadedModel(entry, model, tok, identity)


def _import_attr(path: str):
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


def _load_random(entry: ModelEntry, src: RandomSource) -> LoadedModel:
    cfg = _import_attr(src.config_class)(**dict(src.config))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(src.seed)
        model = _import_attr(src.model_class)(cfg)
    identity = {"name": entry.name, "source": "random", "seed": src.seed,
                "config_sha256": io.sha256_json(dict(src.config))}
    return LoadedModel(entry, model, byte_tokenizer(entry.arch.adds_bos), identity)


def _load_hub(entry: ModelEntry, src: HubSource, dtype: torch.dtype) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local_only = settings.offline()
    revision = src.revision
    try:
        if revision is None and not local_only:
            from huggingface_hub import model_info

            revision = model_info(src.repo).sha
            log.warning("model %s is unpinned in the registry; using %s@%s (recorded in provenance)",
                        entry.name, src.repo, revision)
        tok = AutoTokenizer.from_pretrained(src.repo, revision=revision, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            src.repo, revision=revision, dtype=dtype, local_files_only=local_only)
    except OSError as exc:
        if src.revision is not None and not local_only:
            raise DataError(
                f"{src.repo}@{src.revision}",
                f"model {entry.name!r} could not be loaded at its pinned revision "
                f"(pin source: {src.pin_source or 'not recorded'}): {exc}; if the hub no longer "
                "has this commit, pin a current one in benchmark/models/entries.py",
            ) from exc
        if local_only:
            raise settings.NetworkRequired(
                f"model {entry.name!r} ({src.repo}@{revision or 'unpinned'}) is not in the local "
                f"Hugging Face cache and this run is offline; set {settings.OFFLINE_ENV}=0 on a "
                "networked machine to download it"
            ) from exc
        raise
    if revision is None:  # offline from the local cache: record the snapshot actually used
        revision = getattr(model.config, "_commit_hash", None)
    identity = {"name": entry.name, "source": "hub", "repo": src.repo, "revision": revision}
    return LoadedModel(entry, model, tok, identity)


def embedded_gguf_path(src: EmbeddedSource, cache: Path) -> Path:
    """Path of the embedded GGUF file (assembled into the cache if the package needs it)."""
    spec = importlib.util.find_spec(src.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"embedded model package {src.package!r} is not installed: pip install {src.pip_name}"
        )
    if src.assemble:
        mod = importlib.import_module(src.package)
        return Path(mod.assemble(cache / "gguf" / src.gguf_name))
    path = Path(next(iter(spec.submodule_search_locations))) / src.gguf_name
    if not path.is_file():
        raise FileNotFoundError(f"{src.gguf_name} not found inside package {src.package} at {path}")
    return path


_MANIFEST = "seqedit-manifest.json"


def converted_cache_dir(entry: ModelEntry, gguf_sha: str, cache: Path) -> Path:
    import transformers

    return cache / "models" / f"{entry.name}-{gguf_sha[:16]}-tf{transformers.__version__}"


def _verify_converted(directory: Path) -> bool:
    manifest = directory / _MANIFEST
    if not manifest.is_file():
        return False
    try:
        import json

        files = json.loads(manifest.read_text())["files"]
        return all((directory / n).is_file() and io.sha256_file(directory / n) == h
                   for n, h in files.items())
    except (ValueError, KeyError, OSError):
        return False


def _load_embedded(entry: ModelEntry, src: EmbeddedSource, cache: Path) -> LoadedModel:
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # parallel cells load the same model: the first one assembles and converts it, the
    # others wait for the lock and then find the verified conversion
    with io.file_lock(cache / "models" / f"{entry.name}.lock"):
        gguf = embedded_gguf_path(src, cache)
        gguf_sha = io.sha256_file(gguf)
        target = converted_cache_dir(entry, gguf_sha, cache)
        if not _verify_converted(target):
            if target.exists():
                log.warning("converted-model cache %s is corrupt or partial; rebuilding", target)
            _convert_gguf(gguf, target, gguf_sha)
    tok = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    identity = {"name": entry.name, "source": "embedded", "gguf": src.gguf_name,
                "gguf_sha256": gguf_sha, "transformers": transformers.__version__}
    return LoadedModel(entry, model, tok, identity)


def _convert_gguf(gguf: Path, target: Path, gguf_sha: str) -> None:
    """Dequantise a GGUF into a safetensors directory, written beside and renamed into place."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a safetensors cache (once)", gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".partial-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     dtype=torch.float32)
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        files = {p.name: io.sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        io.write_json(tmp / _MANIFEST, {"gguf_sha256": gguf_sha, "files": files})
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
