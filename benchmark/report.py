"""PNG plots from records (``seqedit report DIR`` rebuilds them with the tables, see
:func:`benchmark.publish.regenerate`).

Plots (matplotlib, Agg backend), one PNG per (model, dataset, metric):

- each editing / general-ability metric against the number of edits, one panel per
  editor; in a panel one line per trajectory restraint × evaluation variant (with and
  without PRUNE on the same axes: solid = no restraint at evaluation, dashed = PRUNE),
  the unedited model (checkpoint n = 0) as a grey horizontal line;
- κ(W) and σ_max(W) of the edited matrices against the number of edits (the largest over
  the edited matrices of a cell), with the unedited matrices' value as the baseline line.
"""

from __future__ import annotations

import re
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from benchmark.core import io
from benchmark.results import Record

SPECTRUM_PLOTS = {"kappa_w": "κ(W) (largest over edited matrices)",
                  "sigma_max_w": "σ_max(W) (largest over edited matrices)"}
_STYLES = {"none": "-", "prune": "--"}
_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
#: units of the editing metrics (benchmark.evaluation.editing reports them x100)
_PERCENT = {"efficacy", "generalization", "locality", "zsre_efficacy", "zsre_generalization",
            "zsre_locality", "mquake_multihop"}


def _editing_label(metric: str) -> str:
    if metric in _PERCENT:
        return f"{metric} (%)"
    if metric.endswith("_magnitude"):
        return f"{metric} (percentage points)"
    return metric


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def _series(records: Sequence[Record], value_of) -> dict[tuple, list[tuple[int, float]]]:
    """(editor, trajectory, variant, ...) -> sorted [(n, value)], the unedited n = 0 included."""
    out: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in records:
        if r.value is None:
            continue
        key = (r.editor, r.trajectory, r.variant, r.batch_size, r.seed, r.timing)
        v = value_of(out[key].get(r.n_edits), r.value)
        out[key][r.n_edits] = v
    return {k: sorted(v.items()) for k, v in out.items()}


def _baseline(records: Sequence[Record], value_of) -> float | None:
    vals: dict[str, float] = {}
    for r in records:
        if r.n_edits == 0 and r.variant == "none" and r.value is not None:
            vals[r.cell] = value_of(vals.get(r.cell), r.value)
    return sum(vals.values()) / len(vals) if vals else None


def _mean_or_max(metric_is_spectrum: bool):
    if metric_is_spectrum:
        return lambda old, new: new if old is None else max(old, new)
    return lambda old, new: new if old is None else old  # one record per key otherwise


def series_label(key: tuple, series: dict[tuple, list[tuple[int, float]]]) -> str:
    """Legend label of one line; a restraint variant whose points equal its trajectory's
    unrestrained ones (drawn exactly under them) says so."""
    editor, traj, variant, bs, seed, timing = key
    label = f"trajectory {traj}, eval {variant}"
    if variant != "none" and series[key] == series.get((editor, traj, "none", bs, seed, timing)):
        label += " (= eval none: restraint never active)"
    if bs != 1:
        label += f", batch {bs}"
    return label


def _plot(path: Path, title: str, ylabel: str, records: Sequence[Record], spectrum: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    value_of = _mean_or_max(spectrum)
    editors = sorted({r.editor for r in records})
    fig, axes = plt.subplots(1, len(editors), figsize=(5.2 * len(editors), 4.0), squeeze=False,
                             sharey=True)
    trajectories = sorted({r.trajectory for r in records})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, editor in zip(axes[0], editors):
        recs = [r for r in records if r.editor == editor]
        series = _series(recs, value_of)
        for key, pts in sorted(series.items()):
            _, traj, variant, *_ = key
            xs, ys = zip(*pts)
            style = _STYLES["prune" if variant.startswith("prune") else "none"]
            t_idx = trajectories.index(traj)
            marker = _MARKERS[t_idx % len(_MARKERS)]
            ax.plot(xs, ys, linestyle=style, marker=marker, markersize=4,
                    label=series_label(key, series), color=colours[t_idx % len(colours)])
        base = _baseline(recs, value_of)
        if base is not None:
            ax.axhline(base, color="grey", linestyle=":", linewidth=1.5, label="unedited (n = 0)")
        ax.set_title(f"{editor}")
        ax.set_xlabel("number of edits")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if spectrum and ax.get_ylim()[0] > 0 and ax.get_ylim()[1] / ax.get_ylim()[0] > 50:
            ax.set_yscale("log")
        ax.legend(fontsize=7, loc="best", handlelength=3.5)
    fig.suptitle(textwrap.fill(title, width=int(70 * len(editors))), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_plots(directory: Path, records: Sequence[Record]) -> list[Path]:
    """Write every plot under ``directory/plots``; stale PNGs there are removed."""
    plots = Path(directory) / "plots"
    written: list[Path] = []
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        if r.kind == "spectrum":
            if r.metric in SPECTRUM_PLOTS:
                groups[(r.model, r.dataset, "spectrum", "", r.metric)].append(r)
        else:
            groups[(r.model, r.dataset, r.kind, r.task, r.metric)].append(r)
    for (model, dataset, kind, task, metric), recs in sorted(groups.items()):
        if not any(r.n_edits > 0 and r.value is not None for r in recs):
            continue
        if kind == "spectrum":
            name = f"{model}__{dataset}__spectrum__{metric}.png"
            ylabel = SPECTRUM_PLOTS[metric]
            title = f"{model} · {dataset}: {ylabel} vs number of edits"
        else:
            name = f"{model}__{dataset}__{kind}__{task}__{metric}.png"
            ylabel = _editing_label(metric) if kind == "editing" else f"{task}: {metric}"
            title = f"{model} · {dataset}: {kind} {task} {metric} vs number of edits"
        path = plots / _safe(name)
        _plot(path, title, ylabel, recs, kind == "spectrum")
        written.append(path)
    if plots.is_dir():
        keep = {p.name for p in written}
        for stale in plots.glob("*.png"):
            if stale.name not in keep:
                stale.unlink()
    return written
