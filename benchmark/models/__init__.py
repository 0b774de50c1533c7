"""Models: the registry of entries (:mod:`.entries`), loading (:mod:`.loading`) and the
byte tokenizer of the tiny test models (:mod:`.tokenizer`).

The schema (:class:`~benchmark.core.arch.ModelEntry`, :class:`~benchmark.core.arch.ArchFacts`)
and the weight-layout helpers live in :mod:`benchmark.core.arch`, below the editors.
"""

from benchmark.models.entries import MODELS, get_entry, register
from benchmark.models.loading import converted_cache_dir, embedded_gguf_path, load
from benchmark.models.tokenizer import byte_tokenizer

__all__ = ["MODELS", "byte_tokenizer", "converted_cache_dir", "embedded_gguf_path", "get_entry",
           "load", "register"]
