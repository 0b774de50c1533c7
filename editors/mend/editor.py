"""The MEND editor behind the common contract (docs/methods.md, MEND).

For a batch of requests on the current model: the edit loss (mean NLL of each new target
after its prompt) is backpropagated once; for every edited matrix the inputs u and output
gradients δ of all tokens go through the trained network, and the Delta holds the factors
``A = lr · δ̃ᵀ`` (out x T) and ``B = ũᵀ`` (in x T) of ``ΔW = lr · Σ_t δ̃_t ũ_tᵀ``: rank at
most T, the number of (unpadded) tokens of the batch. The network is the one trained on
the unedited model; in a sequence it is applied to the current, edited model, as in the
papers. State is empty.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmark.core import io
from benchmark.core.arch import LoadedModel
from benchmark.core.requests import EditRequest
from editors.base import Delta, MatrixDelta
from editors.common import EmptyState
from editors.hparams import check_model_layers
from editors.mend import batches, grads, store
from editors.mend.hparams import MENDHparams
from editors.mend.network import MENDNetwork

log = logging.getLogger(__name__)


def mend_delta(lm: LoadedModel, net: MENDNetwork, requests: Sequence[EditRequest],
               max_tokens: int) -> Delta:
    """The Delta of ``net`` for ``requests`` on the current ``lm`` (the model is not changed)."""
    if not requests:
        raise ValueError("mend: empty batch")
    batch = batches.encode(lm.tokenizer, [(r.prompt, r.target_new) for r in requests], max_tokens)
    batch = batch.to(lm.device)
    names = net.names
    pieces, loss = grads.capture(lm.model, names,
                                 lambda m: batches.masked_nll(batches.logits(m, batch), batch.labels))
    matrices: dict[str, MatrixDelta] = {}
    dtype = next(lm.model.parameters()).dtype
    with torch.no_grad():
        for name in names:
            u, delta = pieces[name]
            A, B = net.factors(name, u, delta)
            matrices[name] = MatrixDelta(name=name, layout=lm.arch.layout, A=A.to(dtype).cpu(), B=B.to(dtype).cpu())
    n_tokens = int(batch.attention_mask.sum())
    info = {"method": "mend", "n_requests": len(requests), "edit_nll_before": loss,
            "n_tokens": n_tokens, "rank_bound": max(md.rank_bound for md in matrices.values())}
    return Delta(matrices, info)


class MEND:
    """MEND editor: applies a trained editor network (see :mod:`editors.mend.store`)."""

    name = "mend"

    def __init__(self, hparams: MENDHparams, *, data_root: str | Path | None = None,
                 cache_root: str | Path | None = None, progress: bool = True, target_engine: str = "fast"):
        self.hparams, self.data_root, self.cache_root = hparams, data_root, cache_root
        self._net: MENDNetwork | None = None
        self._key_sha: str | None = None

    def init_state(self, model: LoadedModel) -> EmptyState:
        return EmptyState()

    def network(self, lm: LoadedModel) -> MENDNetwork:
        """The trained network (loaded once, on the model's device)."""
        if self._net is None:
            check_model_layers(self.name, lm.entry, self.hparams.layers)
            net, meta = store.load_network(lm, self.hparams, data_root=self.data_root, cache_root=self.cache_root)
            self._net, self._key_sha = net.to(lm.device), meta["key_sha256"]
            log.info("MEND network %s loaded", self._key_sha[:16])
        return self._net

    def use_network(self, net: MENDNetwork) -> None:
        """Use ``net`` instead of the cached one (tests, evaluation right after training)."""
        self._net, self._key_sha = net.eval(), io.sha256_json({"in_memory": id(net)})

    def prepare(self, model: LoadedModel, requests: Sequence[EditRequest], state: EmptyState) -> None:
        """Load the network (a clear error saying how to train it when it is missing)."""
        self.network(model)

    def compute(self, model: LoadedModel, requests: Sequence[EditRequest], state: EmptyState) -> Delta:
        net = self.network(model)
        delta = mend_delta(model, net, requests, self.hparams.train.max_tokens)
        delta.info["network_sha256"] = self._key_sha
        return delta
