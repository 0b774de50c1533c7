"""One table from a transformers ``config.model_type`` to the architecture facts an editor needs.

Every model the suite edits -- registry entries and ``hf:``/``path:`` models alike -- gets its
:class:`~benchmark.core.arch.ArchFacts` from :data:`ARCHS`: where the blocks, the MLPs, the
edited MLP output projection and the token embedding live, whether that projection stores its
weight as ``nn.Linear`` (out x in) or as GPT-2's ``Conv1D`` (in x out), whether the model's
tokenizer starts every encoding with BOS, and the padding side for batched generation.
Sizes (layers, width, MLP width, context) come from the config itself. Nothing is matched on
a model's name.

Adding a model type is one row here (and a tiny random model of it in
``tests/models/test_auto_models.py``, which checks that every template resolves to a module of
the documented shape). See docs/extending.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from benchmark.core.arch import ArchFacts, Layout
from benchmark.core.errors import DataError

#: Statistics sequences never exceed this many tokens (the papers' 7B models used 2048).
STATS_CONTEXT_LIMIT = 2048


@dataclass(frozen=True)
class ArchRow:
    """Module layout of one transformers implementation. Templates take ``{layer}``."""

    layer: str  # residual-stream block
    mlp: str  # MLP module whose output is added to the residual stream
    down: str  # the edited matrix: the MLP's output projection (its input is the key)
    embed: str  # token embedding
    layout: Layout
    adds_bos: bool  # the family's tokenizers put BOS first (checked against the tokenizer on load)
    ffn_attr: str | None = "intermediate_size"  # config field of the MLP width (None: n_inner or 4 d)
    sub_config: str | None = None  # sizes live in this sub-config (multimodal wrappers)
    padding_side: Literal["left", "right"] = "left"
    #: a norm between the MLP's output and the residual stream (Gemma-2/3, OLMo-2 normalise
    #: the MLP output before adding it); None: the output is added as it is
    mlp_output_norm: str | None = None


def _decoder(prefix: str, down: str = "mlp.down_proj", *, embed: str = "embed_tokens",
             adds_bos: bool = True, post_mlp_norm: str | None = None, **kw: Any) -> ArchRow:
    block = f"{prefix}.layers.{{layer}}"
    return ArchRow(layer=block, mlp=f"{block}.mlp", down=f"{block}.{down}",
                   embed=f"{prefix}.{embed}", layout="linear", adds_bos=adds_bos,
                   mlp_output_norm=f"{block}.{post_mlp_norm}" if post_mlp_norm else None, **kw)


_POST_MLP = "post_feedforward_layernorm"


def _gpt(down: str, layout: Layout) -> ArchRow:
    return ArchRow(layer="transformer.h.{layer}", mlp="transformer.h.{layer}.mlp",
                   down=f"transformer.h.{{layer}}.mlp.{down}", embed="transformer.wte",
                   layout=layout, adds_bos=False, ffn_attr=None)


#: model_type -> layout (mixture-of-experts MLPs have no single output projection and are
#: not listed). BOS: the family's released tokenizers (LLaMA, Mistral, Gemma add
#: one; GPT-2, GPT-J, GPT-NeoX/Pythia, Qwen, Phi-3, OLMo-2 do not).
ARCHS: dict[str, ArchRow] = {
    "llama": _decoder("model"),
    "mistral": _decoder("model"),
    "qwen2": _decoder("model", adds_bos=False),
    "qwen3": _decoder("model", adds_bos=False),
    "gemma": _decoder("model"),
    "gemma2": _decoder("model", post_mlp_norm=_POST_MLP),
    "gemma3_text": _decoder("model", post_mlp_norm=_POST_MLP),
    "gemma3": _decoder("model.language_model", sub_config="text_config", post_mlp_norm=_POST_MLP),
    "olmo": _decoder("model", adds_bos=False),
    "olmo2": _decoder("model", adds_bos=False, post_mlp_norm=_POST_MLP),
    "phi3": _decoder("model", adds_bos=False),
    "granite": _decoder("model", adds_bos=False),
    "smollm3": _decoder("model", adds_bos=False),
    "stablelm": _decoder("model", adds_bos=False),
    "gpt2": _gpt("c_proj", "conv1d"),
    "gptj": _gpt("fc_out", "linear"),
    "gpt_neox": ArchRow(layer="gpt_neox.layers.{layer}", mlp="gpt_neox.layers.{layer}.mlp",
                        down="gpt_neox.layers.{layer}.mlp.dense_4h_to_h",
                        embed="gpt_neox.embed_in", layout="linear", adds_bos=False),
}


def arch_row(model_type: str, *, source: object = "config.json") -> ArchRow:
    """The table row of ``model_type``; DataError naming ``source`` and the known types."""
    try:
        return ARCHS[model_type]
    except KeyError:
        raise DataError(source, f"model_type {model_type!r} is not in the architecture table "
                                f"(benchmark/models/archs.py); known: {', '.join(sorted(ARCHS))}. "
                                "docs/extending.md says how to add one", field="model_type") from None


def _field(cfg: Any, name: str, source: object) -> Any:
    value = getattr(cfg, name, None)
    if value is None:
        raise DataError(source, f"the config has no {name!r}", field=name)
    return value


def arch_from_config(config: Any, *, source: object = "config.json") -> ArchFacts:
    """ArchFacts of a transformers config (a ``PretrainedConfig``), through :data:`ARCHS`."""
    row = arch_row(getattr(config, "model_type", None) or "", source=source)
    cfg = getattr(config, row.sub_config) if row.sub_config else config
    d = int(_field(cfg, "hidden_size", source))
    if row.ffn_attr is None:  # GPT-2 / GPT-J: n_inner, or 4 d when unset
        ffn = int(getattr(cfg, "n_inner", None) or 4 * d)
    else:
        ffn = int(_field(cfg, row.ffn_attr, source))
    context = int(getattr(cfg, "max_position_embeddings", None) or STATS_CONTEXT_LIMIT)
    return ArchFacts(
        family=config.model_type, n_layers=int(_field(cfg, "num_hidden_layers", source)),
        d_model=d, d_ffn=ffn, layer_template=row.layer, mlp_template=row.mlp,
        down_template=row.down, layout=row.layout, embed_template=row.embed,
        adds_bos=row.adds_bos, padding_side=row.padding_side,
        stats_context_cap=min(context, STATS_CONTEXT_LIMIT),
        mlp_output_norm_template=row.mlp_output_norm,
    )


def registry_arch(model_type: str, n_layers: int, d: int, ffn: int, *, family: str,
                  adds_bos: bool, cap: int) -> ArchFacts:
    """ArchFacts of a registry entry whose sizes are written in code (no config at hand)."""
    row = ARCHS[model_type]
    return ArchFacts(family=family, n_layers=n_layers, d_model=d, d_ffn=ffn, adds_bos=adds_bos,
                     stats_context_cap=cap, layer_template=row.layer, mlp_template=row.mlp,
                     down_template=row.down, layout=row.layout, embed_template=row.embed,
                     padding_side=row.padding_side, mlp_output_norm_template=row.mlp_output_norm)
