"""Shared pieces of the figures (:mod:`benchmark.report`, :mod:`benchmark.report_views`):
readable metric names and units, restraint activity from the records, series with their
standard errors, 95% bands, checkpoint ticks, legends outside the data, and saving one
figure as PNG, SVG and PDF."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from benchmark.core import io
from benchmark.results import Record

Z95 = 1.959963984540054  # two-sided 95% normal quantile
FORMATS = ("png", "svg", "pdf")
SPECTRUM_PLOTS = {"kappa_w": "κ(W) = σ_max / σ_min, largest over edited matrices",
                  "sigma_max_w": "σ_max(W), largest over edited matrices"}
SPECTRUM_AXES = {"kappa_w": "κ(W)", "sigma_max_w": "σ_max(W)"}
#: general metrics that restate word perplexity (one perplexity plot)
REDUNDANT = frozenset({"byte_perplexity", "bits_per_byte"})
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
#: readable name and unit of a metric
METRIC_NAMES = {
    "efficacy": ("efficacy (teacher-forced)", "%"),
    "generalization": ("generalization (teacher-forced)", "%"),
    "locality": ("locality", "%"),
    "gen_efficacy": ("efficacy (generation)", "%"),
    "gen_generalization": ("generalization (generation)", "%"),
    "zsre_efficacy": ("efficacy (teacher-forced)", "%"),
    "zsre_generalization": ("generalization (teacher-forced)", "%"),
    "zsre_locality": ("locality", "%"),
    "zsre_gen_efficacy": ("efficacy (generation)", "%"),
    "zsre_gen_generalization": ("generalization (generation)", "%"),
    "mquake_multihop": ("multi-hop accuracy", "%"),
    "efficacy_magnitude": ("efficacy magnitude", "percentage points"),
    "generalization_magnitude": ("generalization magnitude", "percentage points"),
    "locality_magnitude": ("locality magnitude", "percentage points"),
    "acc": ("accuracy", "fraction correct"),
    "em": ("exact match", "fraction"),
    "margin": ("log-probability margin", "nats"),
    "word_perplexity": ("word perplexity", "lower is better"),
    "rouge_mean": ("ROUGE (mean)", "score"),
    "fluency": ("fluency (n-gram entropy)", "bits"),
    "consistency": ("consistency (TF-IDF cosine)", "score"),
}


def metric_name(metric: str) -> tuple[str, str]:
    """(readable name, unit) of a metric; unknown metrics keep their identifier."""
    return METRIC_NAMES.get(metric, (metric.replace("_", " "), ""))


def axis_label(kind: str, task: str, metric: str, with_task: bool = True) -> str:
    """``task: name (unit)`` of a metric (``with_task`` False: without the task)."""
    if kind == "spectrum":
        return SPECTRUM_AXES.get(metric, metric)
    name, unit = metric_name(metric)
    where = "" if kind == "editing" or not with_task else f"{task.replace('_', ' ')}: "
    return f"{where}{name}" + (f" ({unit})" if unit else "")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


# --------------------------------------------------------------------------- activity
def identity_states(records: Sequence[Record]) -> set[tuple[str, int, str]]:
    """(cell, n_edits, variant) of non-``none`` variants whose every record (spectrum
    included) equals that of ``none`` at the same cell and checkpoint: there the cell
    published the unrestrained records under the variant's label (the restraint did not act)."""
    state: dict[tuple[str, int, str], dict[tuple, tuple]] = defaultdict(dict)
    for r in records:
        state[(r.cell, r.n_edits, r.variant)][(r.kind, r.task, r.metric)] = (r.value, r.n)
    return {k for k, v in state.items() if k[2] != "none" and v == state.get((k[0], k[1], "none"))}


def activity_note(variant: str, checkpoints: Sequence[int], identity: set[int]) -> str:
    """Where a restraint variant acted, from the checkpoints at which it was the identity."""
    if variant == "none":
        return ""
    edited = [n for n in checkpoints if n > 0]
    acted = [n for n in edited if n not in identity]
    if not acted:
        return "never acted (= none)"
    if len(acted) == len(edited):
        return "acted at every checkpoint"
    return "acted at n = " + ", ".join(map(str, acted))


# --------------------------------------------------------------------------- series
SeriesKey = tuple  # (editor, trajectory, variant, batch_size, seed, timing)


def series(records: Sequence[Record], spectrum: bool = False
           ) -> dict[SeriesKey, list[tuple[int, float, float | None]]]:
    """key -> sorted [(n, value, stderr)]; spectrum figures: the largest over the edited
    matrices (no standard error)."""
    out: dict[SeriesKey, dict[int, tuple]] = defaultdict(dict)
    for r in records:
        if r.value is None:
            continue
        key = (r.editor, r.trajectory, r.variant, r.batch_size, r.seed, r.timing)
        old = out[key].get(r.n_edits)
        if spectrum:
            if old is None or r.value > old[1]:
                out[key][r.n_edits] = (r.n_edits, r.value, None)
        elif old is None:
            out[key][r.n_edits] = (r.n_edits, r.value, r.stderr)
    return {k: [v[n] for n in sorted(v)] for k, v in out.items()}


def baseline(records: Sequence[Record], spectrum: bool) -> float | None:
    vals = [pts[0][1] for key, pts in series(
        [r for r in records if r.n_edits == 0 and r.variant == "none"], spectrum).items() if pts]
    return sum(vals) / len(vals) if vals else None


def series_label(key: SeriesKey, note: str = "") -> str:
    _, traj, variant, bs, _, _ = key
    label = f"trajectory {traj}, eval {variant}"
    if bs != 1:
        label += f", batch {bs}"
    return f"{label}: {note}" if note else label


def checkpoints_of(records: Sequence[Record]) -> list[int]:
    return sorted({r.n_edits for r in records})


# --------------------------------------------------------------------------- drawing
def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "seqedit-bench"  # SVG ids repeat from run to run
    import matplotlib.pyplot as plt

    return plt


def draw_series(ax, pts: Sequence[tuple[int, float, float | None]], *, colour, style="-",
                marker="o", label: str | None = None, rate: bool = False,
                band: bool = True) -> None:
    """A line with markers and, where standard errors exist and ``band``, its 95% band."""
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    ax.plot(xs, ys, linestyle=style, marker=marker, markersize=4, color=colour, label=label)
    banded = [p for p in pts if p[2] is not None] if band else []
    if len(banded) > 1:
        lo = [p[1] - Z95 * p[2] for p in banded]
        hi = [p[1] + Z95 * p[2] for p in banded]
        if rate:
            lo, hi = [max(v, 0.0) for v in lo], [min(v, 100.0) for v in hi]
        ax.fill_between([p[0] for p in banded], lo, hi, color=colour, alpha=0.12, linewidth=0)


def style_axis(ax, checkpoints: Sequence[int], ylabel: str, title: str) -> None:
    ax.set_xticks(list(checkpoints))
    ax.set_xlabel("number of edits")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)


def legend_below(ax, ncol: int = 1) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7,
                  ncol=ncol, frameon=False, handlelength=3.0)


def legend_right(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7,
                  frameon=False, handlelength=3.0)


def log_if_wide(ax, ratio: float = 20.0) -> None:
    """A log y-axis when the positive data span more than ``ratio``."""
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo > ratio:
        ax.set_yscale("log")


def save(fig, path: Path) -> list[Path]:
    """Write ``fig`` as PNG at ``path`` and as SVG and PDF beside it (atomically)."""
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in FORMATS:
        target = path.with_suffix(f".{fmt}")
        with io.atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight",
                        metadata={"Software": None} if fmt == "png" else
                        ({"Date": None} if fmt == "svg" else {"CreationDate": None}))
        out.append(target)
    plt.close(fig)
    return out


def line_style(variant: str) -> str:
    """Solid: no restraint at evaluation; dashed: PRUNE; dash-dot: another PRUNE form
    (e.g. ``prune-e-double_add``)."""
    if variant == "none":
        return "-"
    return "--" if variant.count("-") <= 1 else "-."


def is_rate(metric: str) -> bool:
    return metric_name(metric)[1] == "%"


