"""The batch-editor calibration study: its selection rules on hand-written rows, the
null-space count against numpy, shared targets against a fresh optimisation, and the JSON
of a tiny run (every setting and case)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark import models
from benchmark.core import arch as core_arch
from benchmark.core.arch import to_out_in
from benchmark.core.requests import EditRequest
from benchmark.studies import calibration as cal
from editors import batch, solvers
from editors.hparams import load_hparams
from editors.memit import MEMIT
from editors.templates import context_templates


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def hand_built(eigenvalues, seed=0):
    """A symmetric matrix with the given eigenvalues (random orthogonal basis)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return Q @ np.diag(eigenvalues) @ Q.T


def test_null_space_dims_count_the_eigenvalues_below_each_threshold():
    ev = [1e-5, 4e-4, 2e-3, 8e-3, 1.5e-2, 1.9e-2, 3e-2, 7e-2, 0.5, 2.0, 9.0, 40.0]
    C = hand_built(ev)
    thresholds = (1e-3, 1e-2, 2e-2, 5e-2, 1e-1)
    dims = cal.null_space_dims(solvers.c0_eigenvalues(torch.from_numpy(C).float()), thresholds)
    w = np.linalg.eigvalsh(C)
    assert dims == {t: int((w < t).sum()) for t in thresholds}
    assert dims == {1e-3: 2, 1e-2: 4, 2e-2: 6, 5e-2: 7, 1e-1: 8}  # counted from ev by hand
    # the same dimension as the trace of the projection AlphaEdit builds
    for t in thresholds:
        P = solvers.null_space_projection(torch.from_numpy(C).float(), solvers.NullSpaceThreshold("absolute", t))
        assert round(float(P.trace())) == dims[t]


def test_relative_null_space_dims():
    ev = [1e-3, 0.05, 0.4, 1.0, 3.0, 10.0]
    dims = cal.null_space_dims(solvers.c0_eigenvalues(torch.from_numpy(hand_built(ev))), (0.01, 0.05),
                               kind="relative")
    assert dims == {0.01: 2, 0.05: 3}  # below 0.1 and 0.5 (fractions of 10)


def test_choose_lambda_is_the_largest_within_the_margin():
    rows = [{"lambda": 500, "efficacy": 1.0, "generalization": 0.80},
            {"lambda": 2000, "efficacy": 1.0, "generalization": 0.85},
            {"lambda": 8000, "efficacy": 0.95, "generalization": 0.75},
            {"lambda": 15000, "efficacy": 0.60, "generalization": 0.40}]
    # best row: 2000 (1.85); 8000 misses its generalization by 0.10
    assert cal.choose_lambda(rows, margin=0.05) == 2000
    assert cal.choose_lambda(rows, margin=0.10) == 8000
    # margin 0: only the best row itself (largest efficacy + generalization: 2000, 1.85)
    assert cal.choose_lambda(rows, margin=0.0) == 2000
    assert cal.choose_lambda(rows[:1] + rows[3:], margin=0.05) == 500
    assert cal.choose_lambda(rows, margin=1.0) == 15000


def test_choose_lambda_margin_boundary_counts_as_within():
    rows = [{"lambda": 1, "efficacy": 1.0, "generalization": 1.0},
            {"lambda": 2, "efficacy": 0.95, "generalization": 0.95}]
    assert cal.choose_lambda(rows, margin=0.05) == 2


def test_choose_threshold_keeps_the_released_value_unless_degenerate():
    d = 100
    fine = {2: {0.01: 30, 0.02: 40, 0.05: 60}, 3: {0.01: 20, 0.02: 35, 0.05: 50}}
    assert cal.choose_threshold(fine, d) == 0.02
    # released value empty at layer 3 (4 < 5% of 100): the nearest fine one on a log scale
    low = {2: {0.01: 1, 0.02: 30, 0.05: 60}, 3: {0.01: 0, 0.02: 4, 0.05: 50}}
    assert cal.choose_threshold(low, d) == 0.05
    # released value nearly full (> 95%): 0.01 is nearer 0.02 than 0.05 in log scale
    high = {2: {0.01: 80, 0.02: 96, 0.05: 99}}
    assert cal.choose_threshold(high, d) == 0.01
    with pytest.raises(ValueError):
        cal.choose_threshold({2: {0.01: 0, 0.02: 100}}, d)


def test_nse_band_rule_on_hand_written_residuals():
    residuals = [12.0, 30.0, 41.0, 55.0, 60.0, 18.0, 25.0, 70.0, 9.0]
    deltas = [80.0, 95.0, 143.0, 120.0]
    q = float(np.quantile(residuals, 0.25))  # 18.0
    assert q == 18.0
    band = cal.nse_band(residuals, deltas)
    assert band == {"alpha": 10.0, "upper_bound": 300.0, "applies": True}  # 18 -> 10; 286 -> 300
    assert cal.nse_band([3.4, 3.6, 5.0, 9.9], [7.2]) == {"alpha": 3.0, "upper_bound": 20.0, "applies": True}
    # one pass leaves residuals above the fresh deltas (the edit overshoots): no band
    assert cal.nse_band([3500.0, 4200.0, 5000.0, 9000.0], [190.0, 220.0]) == {
        "alpha": 4000.0, "upper_bound": 500.0, "applies": False}
    # alpha between the smallest and the largest fresh delta: not every request is in the band
    assert cal.nse_band([60.0, 70.0, 80.0], [50.0, 100.0])["applies"] is False
    for v in (0.37, 2.0, 286.0, 1234.0):
        assert cal.round_down_1sig(v) <= v <= cal.round_up_1sig(v)
    assert (cal.round_down_1sig(0.37), cal.round_up_1sig(0.37)) == (0.3, 0.4)
    assert cal.round_up_1sig(200.0) == 200.0 and cal.round_down_1sig(1234.0) == 1000.0
    assert cal.round_down_1sig(0.3) == 0.3 and cal.round_up_1sig(0.3) == 0.3
    assert cal.round_up_1sig(9.5) == 10.0 and cal.round_down_1sig(99.9) == 90.0


def test_quantile_matches_numpy():
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 20):
        v = rng.uniform(0, 100, n).tolist()
        for q in (0.0, 0.25, 0.5, 0.9, 1.0):
            assert cal.quantile(v, q) == pytest.approx(float(np.quantile(v, q)))


REQUESTS = [
    EditRequest("c1", "The capital of France is", "France", " Rome", " Paris"),
    EditRequest("c2", "Bob Dylan plays the", "Bob Dylan", " flute", " guitar"),
    EditRequest("c3", "Mount Fuji is in", "Mount Fuji", " Peru", " Japan"),
]


def test_shared_targets_equal_a_fresh_optimisation_and_restore_the_function():
    lm = models.load("tiny-llama")
    hp = load_hparams("memit", "tiny-llama")
    templates = context_templates(lm, hp.templates)
    original = batch.residual_targets
    fresh = {r.case_id: original(lm, [r], hp, templates)[0][:, 0] for r in REQUESTS}
    with cal.shared_targets(lm) as memo:
        assert batch.residual_targets is not original
        Z1, info1 = batch.residual_targets(lm, REQUESTS[:2], hp, templates)
        Z2, info2 = batch.residual_targets(lm, [REQUESTS[1], REQUESTS[2], REQUESTS[0]], hp, templates)
        assert len(memo) == 3
    assert batch.residual_targets is original
    assert torch.equal(Z2[:, 0], Z1[:, 1]) and torch.equal(Z2[:, 2], Z1[:, 0])
    assert info2["delta_norm"][0] == info1["delta_norm"][1]
    for j, r in enumerate([REQUESTS[1], REQUESTS[2], REQUESTS[0]]):
        torch.testing.assert_close(Z2[:, j], fresh[r.case_id], rtol=1e-4, atol=1e-5)


def test_output_gain_is_one_without_a_norm_after_the_mlp():
    lm = models.load("tiny-llama")  # LLaMA block: h + mlp(norm(h)), the MLP output added as is
    for layer in (1, 2):
        gains = cal.output_gain(lm, REQUESTS[0], layer, (1.0, 100.0))
        assert gains[1.0] == pytest.approx(1.0, abs=1e-4) and gains[100.0] == pytest.approx(1.0, abs=1e-4)


def test_output_gain_through_gemmas_post_feedforward_norm():
    """Independently: the change of the post-feedforward RMSNorm's output when the same
    vector is added to its input, computed from the captured MLP output."""
    lm = models.load("tiny-gemma")
    layer, r = 1, REQUESTS[0]
    block = lm.model.model.layers[layer]
    got = {}
    hook = block.mlp.register_forward_hook(lambda m, a, o: got.update(x=o[0].detach().double()))
    with torch.no_grad():
        lm.model(**lm.tokenizer(r.prompt, return_tensors="pt"))
    hook.remove()
    from editors.keys import subject_end, subject_last_token
    pos = subject_last_token(lm.tokenizer, r.prompt, subject_end(r))
    x = got["x"][pos]
    v = torch.randn(lm.arch.d_model, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = v / v.norm()
    w = block.post_feedforward_layernorm.weight.detach().double()
    eps = block.post_feedforward_layernorm.eps

    def norm(y):  # Gemma-3 RMSNorm: y / rms(y) * (1 + w)
        return y / torch.sqrt((y * y).mean() + eps) * (1 + w)

    gains = cal.output_gain(lm, r, layer, (1.0, 100.0))
    for step in (1.0, 100.0):
        expected = float((norm(x + step * v) - norm(x)).norm() / step)
        assert gains[step] == pytest.approx(expected, rel=1e-3)
    assert gains[1.0] != pytest.approx(1.0, abs=1e-2)


def test_update_ratios_against_numpy(tmp_path, data_root):
    lm = models.load("tiny-llama")
    hp = load_hparams("memit", "tiny-llama")
    editor = MEMIT(hp, data_root=data_root, cache_root=tmp_path, progress=False)
    editor.prepare(lm, REQUESTS, editor.init_state(lm))
    delta = editor.compute(lm, REQUESTS, editor.init_state(lm))
    ratios = cal.update_ratios(lm, delta)
    assert sorted(ratios) == list(hp.layers)
    for layer in hp.layers:
        md = delta.matrices[lm.arch.down_name(layer)]
        dW = md.A.double().numpy() @ md.B.double().numpy().T
        W = to_out_in(core_arch.down_weight(lm.model, lm.arch, layer), lm.arch.layout).double().numpy()
        assert ratios[layer] == pytest.approx(np.linalg.norm(dW) / np.linalg.norm(W), rel=1e-4)
        assert ratios[layer] > 0


def test_nse_confirmation_ratios_are_against_the_weights_each_update_is_added_to(tmp_path, data_root,
                                                                                 monkeypatch):
    lm = models.load("tiny-llama")
    hp = load_hparams("nse", "tiny-llama")
    applied = []
    real_apply = cal.apply_delta

    def recording_apply(model, delta):
        weights = {layer: to_out_in(core_arch.down_weight(lm.model, lm.arch, layer), lm.arch.layout)
                   .double().numpy().copy() for layer in hp.layers}
        applied.append((delta, weights))
        return real_apply(model, delta)

    monkeypatch.setattr(cal, "apply_delta", recording_apply)
    res = cal.nse_confirmation(lm, hp, REQUESTS, 2, data_root=data_root, cache_root=tmp_path)
    assert len(applied) == len(res["batches"]) == 2
    for (delta, weights), b in zip(applied, res["batches"]):
        for layer in hp.layers:
            md = delta.matrices[lm.arch.down_name(layer)]
            dW = md.A.double().numpy() @ md.B.double().numpy().T
            assert b["update_ratio"][layer] == pytest.approx(
                np.linalg.norm(dW) / np.linalg.norm(weights[layer]), rel=1e-4, abs=1e-12)


def test_tiny_run_writes_every_setting_and_case(tmp_path, data_root):
    lm = models.load("tiny-llama")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    out = tmp_path / "cal.json"
    argv = ["--model", "tiny-llama", "--n", "4", "--batch-size", "2", "--lambdas", "10,100",
            "--thresholds", "0.01,0.05", "--alphaedit-thresholds", "0.05", "--threads", "1",
            "--data-root", str(data_root), "--cache-root", str(tmp_path / "cache"), "--out", str(out)]
    assert cal.main(argv) == 0
    res = json.loads(out.read_text())
    ids = res["case_ids"]
    assert len(ids) == 4 and res["n"] == 4 and res["batch_size"] == 2
    assert res["command"].startswith("python -m benchmark.studies.calibration --model tiny-llama")
    assert res["git"]["sha"] and set(res["rules"]) == {"lambda", "threshold", "nse_band"}
    assert [r["lambda"] for r in res["lambda_sweep"]] == [10.0, 100.0]
    for row in res["lambda_sweep"] + res["alphaedit"]:
        assert [b["case_ids"] for b in row["batches"]] == [ids[:2], ids[2:]]
        cases = [c for b in row["batches"] for c in b["cases"]]
        assert [c["case_id"] for c in cases] == ids
        for metric in ("efficacy", "generalization", "locality"):
            vals = [c[metric] for c in cases if metric in c]
            assert all(0.0 <= v <= 1.0 for v in vals)
            assert row[metric] == pytest.approx(sum(vals) / len(vals))
        for b in row["batches"]:
            assert len(b["final_residual_norm"]) == 2 and len(b["delta_norm"]) == 2
            assert sorted(b["update_ratio"], key=int) == ["1", "2"]
    assert [r["threshold"] for r in res["alphaedit"]] == [0.05]
    gains = res["output_gain"]
    assert sorted(gains, key=int) == ["1", "2"]
    for per in gains.values():  # tiny-llama: the MLP output enters the residual as is
        assert all(g == pytest.approx(1.0, abs=1e-4) for step in per.values() for g in step)
        assert all(len(step) == 4 for step in per.values())
    hp = load_hparams("alphaedit", "tiny-llama")
    assert sorted(res["null_space"]["layers"], key=int) == [str(x) for x in hp.layers]
    for row in res["null_space"]["layers"].values():
        assert sorted(row["dims"], key=float) == ["0.01", "0.05"]
        assert row["dims"]["0.01"] <= row["dims"]["0.05"] <= res["null_space"]["d_ffn"]
    # the chosen values follow the rules, recomputed here from the recorded rows
    rows = res["lambda_sweep"]
    best = max(rows, key=lambda r: (r["efficacy"] + r["generalization"], -r["lambda"]))
    ok = [r["lambda"] for r in rows if r["efficacy"] >= best["efficacy"] - 0.05 - 1e-9
          and r["generalization"] >= best["generalization"] - 0.05 - 1e-9]
    assert res["chosen"]["mom2_update_weight"] == max(ok)
    chosen = next(r for r in rows if r["lambda"] == max(ok))
    residuals = [x for b in chosen["batches"] for x in b["final_residual_norm"]]
    assert res["nse_band_inputs"]["one_pass_residuals"] == residuals
    rule = res["nse_band_rule"]
    fresh = res["nse_band_inputs"]["fresh_delta_norms"]
    assert rule["alpha"] <= float(np.quantile(residuals, 0.25)) and 2 * max(fresh) <= rule["upper_bound"]
    assert rule["applies"] == (rule["alpha"] < min(fresh))
    if rule["applies"]:
        assert res["nse"]["hparams"]["alpha"] == res["chosen"]["alpha"] == rule["alpha"]
        assert res["nse"]["hparams"]["upper_bound"] == res["chosen"]["upper_bound"] == rule["upper_bound"]
    else:
        assert res["chosen"]["alpha"] is None and res["chosen"]["upper_bound"] is None
        nse_file = load_hparams("nse", "tiny-llama")
        assert res["nse"]["hparams"]["alpha"] == nse_file.alpha
        assert res["nse"]["hparams"]["upper_bound"] == nse_file.upper_bound
    assert res["nse"]["hparams"]["mom2_update_weight"] == res["chosen"]["mom2_update_weight"]
    nse = res["nse"]
    assert [c["case_id"] for c in nse["cases_final"]] == ids
    assert [c["case_id"] for b in nse["batches"] for c in b["cases_each"]] == ids
    assert len(nse["n_passes"]) == 2
    # the unedited model is restored bit for bit
    after = lm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
