"""Starting hyperparameters for a model that has none (``seqedit hparams init``).

What is chosen, and from what (docs/extending.md, "A model without hyperparameters"):

- **Layer.** A short ROME sweep (:mod:`benchmark.studies.layer_choice`): each of the first
  ``n`` CounterFact edit-split facts is edited alone at each candidate layer, on the unedited
  model; the layer with the best efficacy + generalization + locality wins, ties broken by
  the mean rewrite margin log P(new) − log P(true). Candidates sit at 10-35% of the depth,
  where the released ROME layers of the paper models lie (GPT-2 XL 17/48, GPT-J 5/28,
  LLaMA 4-5/32) and where the embedded models' sweeps landed (SmolLM2 6/30, Gemma-3 3/18;
  docs/layer-choice.md). Without the sweep (``--no-sweep``) the layer is the one at 20% of
  the depth, the SmolLM2 sweep's choice as a share of its layers.
- **Batch editors' layers.** Five layers centred on the ROME layer (SmolLM2: ROME 6, MEMIT
  4-8), moved inward at the model's first or last layer.
- **λ** (``mom2_update_weight``). The 7B models' value 15000 scaled linearly with the width
  d_model: λ = 15000 · d / 4096, to two significant digits. At SmolLM2's width (576) this
  gives 2100; the calibration there found that 15000 reached half the efficacy of 2000
  (docs/batch-editors.md, λ).
- **Everything else.** The settings of the SmolLM2 files of the same editor
  (editors/hparams/<editor>/smollm2-135m.yaml): templates, target optimisation, statistics
  (wikitext, 200 chunks), AlphaEdit's threshold and β, NSE's band (not scaled).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from benchmark.core.errors import DataError

log = logging.getLogger(__name__)

#: The editors ``init`` writes files for.
EDITORS = ("rome", "memit", "memit-seq", "alphaedit", "nse")
#: The model whose files give every setting but the layers and λ.
TEMPLATE_MODEL = "smollm2-135m"
LAMBDA_7B, WIDTH_7B = 15000.0, 4096
HEURISTIC_DEPTH = 0.2
SWEEP_DEPTHS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35)
WINDOW = 5


def scaled_lambda(d_model: int) -> float:
    """λ = 15000 · d / 4096, rounded to two significant digits."""
    value = LAMBDA_7B * d_model / WIDTH_7B
    return float(f"{value:.2g}")


def heuristic_layer(n_layers: int) -> int:
    """The layer at 20% of the depth."""
    return min(n_layers - 1, max(0, round(HEURISTIC_DEPTH * n_layers)))


def sweep_candidates(n_layers: int) -> list[int]:
    """Layers at 10, 15, ..., 35% of the depth (distinct, within the model)."""
    return sorted({min(n_layers - 1, max(0, round(f * n_layers))) for f in SWEEP_DEPTHS})


def batch_window(layer: int, n_layers: int, width: int = WINDOW) -> list[int]:
    """``width`` consecutive layers centred on ``layer``, shifted to fit in the model."""
    width = min(width, n_layers)
    start = min(max(0, layer - width // 2), n_layers - width)
    return list(range(start, start + width))


@dataclass
class LayerChoice:
    """The chosen ROME layer and how it was chosen (for the file's comments)."""

    layer: int
    how: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # the sweep's per-layer summaries


def best_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The best sweep row: efficacy + generalization + locality, then the rewrite margin."""
    def score(r: dict[str, Any]) -> tuple[float, float]:
        return (sum(r.get(k, 0.0) for k in ("efficacy", "generalization", "locality")),
                r["rewrite_margin"])
    return max(rows, key=score)


def sweep_layer(model: str, n_layers: int, *, n: int, candidates: Sequence[int] | None,
                stats_samples: int, data_root=None, cache_root=None,
                progress: bool = True) -> LayerChoice:
    """Run the ROME sweep (benchmark.studies.layer_choice) and pick the best layer."""
    from benchmark import models
    from benchmark.data import load_requests
    from benchmark.studies.layer_choice import layer_row
    from editors import stats

    layers = list(candidates) if candidates else sweep_candidates(n_layers)
    bad = [x for x in layers if not 0 <= x < n_layers]
    if bad:
        raise DataError("--candidates", f"layers {bad} outside 0..{n_layers - 1} of {model}")
    lm = models.load(model, cache_dir=cache_root)
    base = template_hparams("rome", [layers[0]], stats_samples=stats_samples)
    requests = load_requests("counterfact", "edit", limit=n, data_root=data_root)
    stats.second_moments(lm, layers, base.stats, data_root=data_root, cache_root=cache_root,
                         progress=progress)
    rows = [layer_row(lm, base, layer, requests, data_root=data_root, cache_root=cache_root,
                      progress=progress) for layer in layers]
    summaries = [{k: v for k, v in r.items() if k != "cases"} for r in rows]
    best = best_row(summaries)
    how = (f"ROME sweep over layers {layers}, the first {len(requests)} CounterFact edit-split "
           "facts each edited alone; best efficacy + generalization + locality, then margin")
    return LayerChoice(best["layer"], how, summaries)


def heuristic_choice(n_layers: int) -> LayerChoice:
    layer = heuristic_layer(n_layers)
    return LayerChoice(layer, f"no sweep: the layer at {HEURISTIC_DEPTH:.0%} of {n_layers} layers "
                              "(SmolLM2's swept layer 6 of 30 as a share of the depth)")


def template_hparams(editor: str, layers: list[int], *, stats_samples: int | None = None):
    """The SmolLM2 settings of ``editor`` with ``layers`` (and the statistics sample count)."""
    from editors.hparams import load_hparams

    over: dict[str, Any] = {"layers": layers}
    if stats_samples is not None:
        over["stats.n_samples"] = stats_samples
    return load_hparams(editor, TEMPLATE_MODEL, over)


def render(editor: str, model: str, arch, choice: LayerChoice, *,
           stats_samples: int | None = None) -> str:
    """The YAML text of the starting file, with a comment on where each value came from."""
    from editors.hparams import parse_hparams

    one = editor == "rome"
    layers = [choice.layer] if one else batch_window(choice.layer, arch.n_layers)
    hp = template_hparams(editor, layers, stats_samples=stats_samples)
    data = hp.model_dump(mode="json", exclude={"method", "source"})
    notes = {"layers": (f"ROME layer {choice.layer}: {choice.how}" if one else
                        f"{len(layers)} layers centred on the ROME layer {choice.layer} "
                        f"({choice.how})")}
    if "mom2_update_weight" in data:
        lam = scaled_lambda(arch.d_model)
        data["mom2_update_weight"] = lam
        notes["mom2_update_weight"] = (f"λ = 15000 · d/4096 = 15000 · {arch.d_model}/4096, two "
                                       "significant digits (docs/batch-editors.md, λ)")
    if "upper_bound" in data:
        notes["alpha"] = ("NSE's residual band (alpha, upper_bound) is SmolLM2's, not scaled to this "
                          "model: compare with ‖z − h‖ of a few edits (docs/batch-editors.md)")
    source = (f"seqedit hparams init: layers from {'a ROME sweep' if choice.rows else 'a heuristic'}"
              f", λ scaled to width, other values from {editor}/{TEMPLATE_MODEL}.yaml")
    parse_hparams(editor, {"source": source, **data}, source=f"{editor} for {model}")  # valid
    lines = [f"# {editor} on {model} ({arch.family}, {arch.n_layers} layers, d={arch.d_model}, "
             f"ffn {arch.d_ffn}): starting values written by `seqedit hparams init`.",
             f"# Values not commented below are those of editors/hparams/{editor}/"
             f"{TEMPLATE_MODEL}.yaml.",
             "# Check them on your model before trusting results (docs/extending.md)."]
    if not one and arch.mlp_output_norm_template is not None:
        from editors.batch import MLP_OUTPUT_NORM_CAVEAT  # torch: only where it is needed

        lines.append(f"# WARNING: {MLP_OUTPUT_NORM_CAVEAT}.")
    for row in choice.rows:
        lines.append(f"#   sweep layer {row['layer']:3d}: efficacy {row['efficacy']:.2f} "
                     f"generalization {row['generalization']:.2f} locality {row['locality']:.2f} "
                     f"margin {row['rewrite_margin']:.2f}")
    lines.append(f"source: {_scalar(source)}")
    shared = ("templates", "target", "stats")
    for key in [k for k in data if k not in shared] + [k for k in shared if k in data]:
        if key in notes:
            lines.append(f"# {notes[key]}")
        lines += _emit(key, data[key])
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, allow_unicode=True, width=1000).strip()
    return text.removesuffix("\n...").strip()


def _emit(key: str, value: Any, indent: int = 0) -> list[str]:
    """Block mappings, flow lists, plain scalars: the layout of the shipped files."""
    pad = " " * indent
    if isinstance(value, dict):
        return [f"{pad}{key}:"] + [line for k, v in value.items() for line in _emit(k, v, indent + 2)]
    if isinstance(value, list):
        flow = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1000)
        return [f"{pad}{key}: {flow.strip()}"]
    return [f"{pad}{key}: {_scalar(value)}"]
