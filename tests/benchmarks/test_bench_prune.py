"""Restraint overhead benchmarks (issue 4; how to run and read them: docs/bench.md).

Groups (pytest-benchmark ``group``) put the two sides of each comparison in one table:
- ``restrain <out>x<in> r=<rank>``: PRUNE fast path (thin QR of the factors + core SVD,
  m cached) against :func:`prune.reference_prune` (numpy SVDs of ΔW, W0 and W_n, as the
  released PRUNE code) on random matrices of the shapes edited in SmolLM2 (576x1536),
  GPT-2 XL (1600x6400), LLaMA-2-7B (4096x11008) and LLaMA-3-8B (4096x14336).
- ``m one-off``: computing m = σ_max(W0) (cached per matrix afterwards).
- ``smollm2 overhead``: PRUNE on SmolLM2-shaped accumulated updates of rank 1..50 (the
  accumulated update after 1..50 ROME edits), RECT on one dense edit, and one forward+backward
  pass of SmolLM2-135M on a short prompt (embedded; the fallback yardstick for "PRUNE costs at
  most 1% of one edit").

Large shapes, rank 1000 and the reference on anything but 576x1536 are marked ``slow``.
No timing is asserted: compare runs with ``--benchmark-compare`` (see docs/bench.md).
"""

from __future__ import annotations

import functools

import pytest
import torch

from prune import PRUNE, RECT, reference_prune, sigma_max

pytestmark = pytest.mark.bench

SHAPES = {
    "smollm2": (576, 1536),
    "gpt2-xl": (1600, 6400),
    "llama2-7b": (4096, 11008),
    "llama3-8b": (4096, 14336),
}
RANKS = (1, 10, 100, 1000)
BIG_NUMEL = 20_000_000  # 4096x11008 and up: generating the matrices alone takes seconds


@functools.lru_cache(maxsize=2)
def _w0(shape: tuple[int, int]) -> tuple[torch.Tensor, float]:
    """A weight-like random W0 and its m = σ_max(W0).

    Entries N(0, 0.02²) plus a rank-2 spike at about twice the bulk's edge: trained weight
    matrices have separated top singular values, which is what the Lanczos σ_max relies on.
    """
    gen = torch.Generator().manual_seed(shape[0] * 100_003 + shape[1])
    w0 = torch.randn(shape, generator=gen) * 0.02
    edge = 0.02 * (shape[0] ** 0.5 + shape[1] ** 0.5)
    u = torch.linalg.qr(torch.randn(shape[0], 2, generator=gen))[0]
    v = torch.linalg.qr(torch.randn(shape[1], 2, generator=gen))[0]
    w0 += (u * torch.tensor([2.0 * edge, 1.5 * edge])) @ v.T
    return w0, sigma_max(w0)


def _factors(shape: tuple[int, int], rank: int, m: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rank-``rank`` factors with σ_max(A Bᵀ) of a few m, so the restraint is active."""
    gen = torch.Generator().manual_seed(rank)
    a = torch.randn(shape[0], rank, generator=gen)
    b = torch.randn(shape[1], rank, generator=gen)
    scale = 4.0 * m / (shape[0] ** 0.5 * shape[1] ** 0.5)
    return a * scale, b


def _cases(kind: str):
    for label, shape in SHAPES.items():
        for rank in RANKS:
            big = shape[0] * shape[1] > BIG_NUMEL
            slow = big or rank == 1000 or (kind == "reference" and label != "smollm2")
            marks = [pytest.mark.slow] if slow else []
            yield pytest.param(shape, rank, id=f"{label}-{shape[0]}x{shape[1]}-r{rank}", marks=marks)


@pytest.mark.parametrize(("shape", "rank"), list(_cases("fast")))
def test_prune_fast(benchmark, shape, rank):
    w0, m = _w0(shape)
    a, b = _factors(shape, rank, m)
    prune = PRUNE()
    benchmark.group = f"restrain {shape[0]}x{shape[1]} r={rank}"
    benchmark.extra_info.update(shape=list(shape), rank=rank, path="fast")
    ra, rb = benchmark(prune.restrain, w0, (a, b), sigma_max_w0=m)
    assert ra.shape[1] == rb.shape[1] == min(rank, *shape)


@pytest.mark.parametrize(("shape", "rank"), list(_cases("reference")))
def test_prune_reference(benchmark, shape, rank):
    w0, m = _w0(shape)
    a, b = _factors(shape, rank, m)
    dense = a @ b.T  # the released code gets the dense ΔW = W_n - W0
    benchmark.group = f"restrain {shape[0]}x{shape[1]} r={rank}"
    benchmark.extra_info.update(shape=list(shape), rank=rank, path="reference")
    small = shape[0] * shape[1] <= 1_000_000
    res = benchmark.pedantic(
        reference_prune, args=(w0, dense), rounds=3 if small else 1, iterations=1, warmup_rounds=0
    )
    assert res.rank == min(rank, *shape)
    assert res.sigma_max_w0 == pytest.approx(m, rel=1e-4)


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(s, id=f"{k}-{s[0]}x{s[1]}", marks=[pytest.mark.slow] if s[0] * s[1] > BIG_NUMEL else [])
        for k, s in SHAPES.items()
    ],
)
def test_sigma_max_one_off(benchmark, shape):
    w0, m = _w0(shape)
    benchmark.group = "m one-off"
    benchmark.extra_info.update(shape=list(shape))
    got = benchmark.pedantic(sigma_max, args=(w0,), rounds=1, iterations=1)
    assert got == pytest.approx(m, rel=1e-12)


# ---------------------------------------------------------------------- SmolLM2 overhead
SMOL = SHAPES["smollm2"]


@pytest.mark.parametrize("rank", [1, 2, 5, 10, 20, 50])
def test_smollm2_prune(benchmark, rank):
    w0, m = _w0(SMOL)
    a, b = _factors(SMOL, rank, m)
    benchmark.group = "smollm2 overhead"
    benchmark.extra_info.update(shape=list(SMOL), rank=rank, path="fast")
    ra, _ = benchmark(PRUNE().restrain, w0, (a, b), sigma_max_w0=m)
    assert ra.shape[1] == rank


def test_smollm2_rect(benchmark):
    w0, m = _w0(SMOL)
    a, b = _factors(SMOL, 1, m)
    dense = a @ b.T
    rect = RECT()
    benchmark.group = "smollm2 overhead"
    out = benchmark(rect.restrain, w0, dense)
    assert int(torch.count_nonzero(out)) == rect.kept_count(dense.numel())


@pytest.mark.embedded
def test_smollm2_forward_backward(benchmark, smollm2):
    """One forward+backward pass of SmolLM2-135M on a short prompt (the fallback yardstick)."""
    model, tok = smollm2.model, smollm2.tokenizer
    enc = tok("The Eiffel Tower is located in the city of Paris", return_tensors="pt").to(smollm2.device)
    model.train(False)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for p in frozen:  # the shared fixture may be frozen; restored below
        p.requires_grad_(True)

    def step():
        model.zero_grad(set_to_none=True)
        loss = model(**enc, labels=enc["input_ids"]).loss
        loss.backward()
        return loss.detach()

    benchmark.group = "smollm2 overhead"
    benchmark.extra_info.update(tokens=int(enc["input_ids"].shape[1]))
    try:
        loss = benchmark(step)
    finally:
        model.zero_grad(set_to_none=True)
        for p in frozen:
            p.requires_grad_(False)
    assert torch.isfinite(loss)
