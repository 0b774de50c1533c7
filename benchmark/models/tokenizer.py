"""A byte-level tokenizer for the tiny random models (no download)."""

from __future__ import annotations


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


