"""The per-layer diagnostics of the batch layer loop (``Delta.info["layer_info"]``)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.core import arch as core_arch
from benchmark.core.arch import to_out_in
from editors.memit import MEMIT
from tests.editors.test_memit import REQUESTS, tiny_hparams


def test_layer_info_norms_are_of_the_weights_before_and_the_update(tiny, corpus_root, stats_cache):
    lm = tiny
    hp = tiny_hparams("memit", lam=1.0)
    before = {layer: to_out_in(core_arch.down_weight(lm.model, lm.arch, layer), lm.arch.layout)
              .double().numpy().copy() for layer in hp.layers}
    editor = MEMIT(hp, data_root=corpus_root, cache_root=stats_cache, progress=False)
    editor.prepare(lm, REQUESTS[:3], editor.init_state(lm))
    delta = editor.compute(lm, REQUESTS[:3], editor.init_state(lm))
    infos = {i["layer"]: i for i in delta.info["layer_info"]}
    assert sorted(infos) == list(hp.layers)
    for layer in hp.layers:
        md = delta.matrices[lm.arch.down_name(layer)]
        dW = md.A.double().numpy() @ md.B.double().numpy().T
        assert np.linalg.norm(dW) > 1e-3 * np.linalg.norm(before[layer])  # a visible update
        assert infos[layer]["weight_norm"] == pytest.approx(np.linalg.norm(before[layer]), rel=1e-5)
        assert infos[layer]["update_norm"] == pytest.approx(np.linalg.norm(dW), rel=1e-4)
