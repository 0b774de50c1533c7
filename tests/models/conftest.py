"""Tiny random models of many transformers architectures, saved as ``save_pretrained``
folders (weights, config, a byte-level tokenizer) for ``path:DIR`` tests."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

#: 256 bytes + <pad> <bos> <eos> <unk> (benchmark.models.tokenizer)
VOCAB = 260
_IDS = dict(bos_token_id=257, eos_token_id=258, pad_token_id=256)
_DECODER = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, **_IDS)

#: model_type -> tiny config kwargs (2 layers, width 32-48)
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "llama": _DECODER,
    "mistral": _DECODER,
    "qwen2": _DECODER,
    "qwen3": dict(_DECODER, head_dim=8),
    "gemma": dict(_DECODER, head_dim=8),
    "gemma2": dict(_DECODER, head_dim=8),
    "gemma3_text": dict(_DECODER, head_dim=8, sliding_window=64),
    "olmo2": _DECODER,
    "phi3": _DECODER,
    "gpt_neox": dict(_DECODER, hidden_size=48, intermediate_size=64),
    # the multimodal wrapper: a 1-layer vision tower, image tokens after the byte vocabulary
    "gemma3": dict(text_config=dict(_DECODER, head_dim=8, vocab_size=VOCAB + 3),
                   vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, image_size=28, patch_size=14),
                   mm_tokens_per_image=4, image_token_index=VOCAB, boi_token_index=VOCAB + 1,
                   eoi_token_index=VOCAB + 2),
    "gpt2": dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=128, **_IDS),
    "gptj": dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=128, rotary_dim=4,
                 n_inner=80, **_IDS),
}

_WORDS = ("the of and a in to was is for on as by with he at from his an were are which "
          "city river king music album song film war army team season game school").split()


def save_tiny(model_type: str, folder: Path, *, seed: int = 0) -> Path:
    """A random model of ``model_type`` and the byte tokenizer (BOS as the table says the
    family's tokenizers do), written with ``save_pretrained``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from benchmark.models.archs import ARCHS
    from benchmark.models.tokenizer import byte_tokenizer

    config = AutoConfig.for_model(model_type, **TINY_CONFIGS[model_type])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    byte_tokenizer(ARCHS[model_type].adds_bos).save_pretrained(folder)
    return folder


def write_corpus(root: Path, seed: int = 0) -> Path:
    """A small WikiText-shaped statistics corpus under ``root/wikitext/wiki.test.raw``."""
    rng = random.Random(seed)
    lines = []
    for a in range(4):
        lines += ["", f" = Article {a} = ", ""]
        lines += [" " + " ".join(rng.choice(_WORDS) for _ in range(60)) + " ." for _ in range(2)]
    path = root / "wikitext" / "wiki.test.raw"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory) -> dict[str, Path]:
    """model_type -> a saved tiny model folder (built once per session)."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {t: save_tiny(t, root / t) for t in TINY_CONFIGS}


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root)
    return root


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
