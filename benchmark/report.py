"""Figures of a results folder (``seqedit report DIR`` rebuilds them with the tables, see
:func:`benchmark.publish.regenerate`). Each figure is written as PNG (150 dpi), SVG and PDF.

Per (model, dataset) and metric, :func:`_plot` draws the metric against the number of edits,
one panel per editor with its own y-axis, one line per trajectory restraint × evaluation
variant (solid: no restraint at evaluation, dashed: PRUNE) with a 95% band (± 1.96
standard errors of the record), ticks at the checkpoints, the unedited model as a grey
line, and the legend below the panel. A variant's label says where its restraint acted:
at a checkpoint where its records equal those of ``none`` (the cell published the
unrestrained model's records under the variant's label: the restraint was the identity)
it did not act. Word perplexity is the one perplexity-type plot (byte perplexity and bits
per byte restate it). Further views: :mod:`benchmark.report_views`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from benchmark.plotting import (
    FORMATS,
    MARKERS,
    REDUNDANT,
    SPECTRUM_PLOTS,
    _safe,
    activity_note,
    axis_label,
    baseline,
    checkpoints_of,
    draw_series,
    identity_states,
    is_rate,
    legend_below,
    line_style,
    log_if_wide,
    pyplot,
    save,
    series,
    series_label,
    style_axis,
)
from benchmark.report_views import (
    figure_legend,
    headline_signals,
    records_of,
    series_name,
    styles_by_editor,
    write_views,
)
from benchmark.results import Record


def paired_bounds(directory: Path) -> dict[tuple, tuple[float, float]]:
    """(cell, n_edits, variant, kind, task, metric) -> the 95% paired interval of the value
    implied by its change from the unedited model (``tables/paired.csv``, comparison
    ``vs_unedited``: unedited value + [ci_low, ci_high]); empty without that table."""
    from benchmark.tables import read_paired

    t = read_paired(directory)
    if t is None:
        return {}
    t = t[t["ci_low"].notna() & t["ci_high"].notna()]
    return {(r.cell, int(r.n_edits), r.variant, r.kind, r.task, r.metric):
            (float(r.value_ref + r.ci_low), float(r.value_ref + r.ci_high))
            for r in t.itertuples(index=False)}


def _paired_band(ax, recs: Sequence[Record], key: tuple, bounds: dict, colour) -> None:
    """A band from the paired intervals of a series without standard errors (perplexity)."""
    pts = sorted((r.n_edits, *bounds[(r.cell, r.n_edits, r.variant, r.kind, r.task, r.metric)])
                 for r in recs if (r.editor, r.trajectory, r.variant, r.batch_size, r.seed,
                                   r.timing) == key and r.stderr is None
                 and (r.cell, r.n_edits, r.variant, r.kind, r.task, r.metric) in bounds)
    if len(pts) > 1:
        ax.fill_between([p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts],
                        color=colour, alpha=0.12, linewidth=0)


def _plot(path: Path, title: str, ylabel: str, records: Sequence[Record], spectrum: bool,
          identity: set[tuple[str, int, str]] | None = None,
          bounds: dict | None = None) -> None:
    """One metric against the number of edits, a panel per editor. ``identity``: the
    (cell, n_edits, variant) states where a restraint did not act, found over all records of
    the cells (:func:`identity_states`; from ``records`` alone when not given)."""
    plt = pyplot()
    editors = sorted({r.editor for r in records})
    fig, axes = plt.subplots(1, len(editors), figsize=(4.8 * len(editors), 4.6), squeeze=False)
    trajectories = sorted({r.trajectory for r in records})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    identity = identity_states(records) if identity is None else identity
    metric = records[0].metric
    for ax, editor in zip(axes[0], editors):
        recs = [r for r in records if r.editor == editor]
        cps = checkpoints_of(recs)
        cells = defaultdict(set)
        for r in recs:
            cells[(r.trajectory, r.variant)].add(r.cell)
        for key, pts in sorted(series(recs, spectrum).items()):
            _, traj, variant, *_ = key
            idle = {n for (cell, n, v) in identity
                    if v == variant and cell in cells[(traj, variant)]}
            t_idx = trajectories.index(traj)
            note = activity_note(variant, cps, idle)
            draw_series(ax, pts, colour=colours[t_idx % len(colours)],
                        style=line_style(variant),
                        marker=MARKERS[t_idx % len(MARKERS)], label=series_label(key, note),
                        rate=is_rate(metric), band=not note.startswith("never"))
            if bounds and not note.startswith("never"):
                _paired_band(ax, recs, key, bounds, colours[t_idx % len(colours)])
        base = baseline(recs, spectrum)
        if base is not None:
            ax.axhline(base, color="grey", linestyle=":", linewidth=1.5, label="unedited (n = 0)")
        style_axis(ax, cps, ylabel, editor)
        if spectrum:
            log_if_wide(ax, 50.0)
        legend_below(ax)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save(fig, path)


def plot_groups(records: Sequence[Record]) -> dict[tuple, list[Record]]:
    """(model, dataset, kind, task, metric) -> records of one per-metric plot."""
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        if r.kind == "spectrum":
            if r.metric in SPECTRUM_PLOTS:
                groups[(r.model, r.dataset, "spectrum", "", r.metric)].append(r)
        elif not (r.kind == "general" and r.metric in REDUNDANT):
            groups[(r.model, r.dataset, r.kind, r.task, r.metric)].append(r)
    return {k: v for k, v in sorted(groups.items())
            if any(r.n_edits > 0 and r.value is not None for r in v)}


def _views(plots: Path, records: Sequence[Record]) -> list[Path]:
    """The grid's overview and the views of :mod:`benchmark.report_views`."""
    written = write_views(plots, records)
    grids = sorted({r.grid for r in records})
    if any(r.n_edits > 0 for r in records):
        path = plots / _safe(f"{'+'.join(grids)}__overview.png")
        save(overview(records, f"grid {', '.join(grids)}"), path)
        written.append(path)
    return written


def overview(records: Sequence[Record], title: str):
    """The grid at a glance: a row of panels per (model, dataset), one panel per headline
    metric and κ(W), a line per editor × trajectory × variant."""
    pairs = sorted({(r.model, r.dataset) for r in records})
    rows = []
    for model, dataset in pairs:
        recs = [r for r in records if (r.model, r.dataset) == (model, dataset)]
        spectrum = [r for r in recs if r.kind == "spectrum" and r.metric == "kappa_w"]
        rows.append((f"{model} · {dataset}", recs, headline_signals(recs)
                     + ([("spectrum", "", "kappa_w")] if spectrum else [])))
    ncols = max(len(panels) for *_, panels in rows)
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), ncols, figsize=(3.9 * ncols, 3.3 * len(rows)),
                             squeeze=False)
    style = styles_by_editor(records)
    used = []
    for i, (name, recs, panels) in enumerate(rows):
        for j in range(ncols):
            ax = axes[i][j]
            if j >= len(panels):
                ax.set_visible(False)
                continue
            sig = panels[j]
            mine = [r for r in recs if r.kind == "spectrum" and r.metric == "kappa_w"] \
                if sig[0] == "spectrum" else records_of(recs, sig)
            for key, pts in sorted(series(mine, sig[0] == "spectrum").items()):
                draw_series(ax, pts, label=series_name(key), rate=is_rate(sig[2]),
                            band=key[2] == "none", **style(key))
            style_axis(ax, checkpoints_of(mine), axis_label(*sig, with_task=False),
                       f"{name}\n{axis_label(*sig).split(' (')[0]}" if j == 0
                       else axis_label(*sig).split(" (")[0])
            if sig[0] == "spectrum":
                log_if_wide(ax)
            used.append(ax)
    fig.suptitle(f"{title}\nbands: 95% intervals (±1.96 s.e.) of the unrestrained variants; "
                 "dashed: PRUNE at evaluation", fontsize=12)
    fig.tight_layout()
    figure_legend(fig, used)
    return fig


def write_plots(directory: Path, records: Sequence[Record]) -> list[Path]:
    """Write every figure under ``directory/plots`` (PNG paths returned; SVG and PDF beside
    them); stale figures there are removed."""
    plots = Path(directory) / "plots"
    written: list[Path] = []
    identity = identity_states(records)
    bounds = paired_bounds(directory)
    for (model, dataset, kind, task, metric), recs in plot_groups(records).items():
        if kind == "spectrum":
            name = f"{model}__{dataset}__spectrum__{metric}.png"
        else:
            name = f"{model}__{dataset}__{kind}__{task}__{metric}.png"
        ylabel = axis_label(kind, task, metric, with_task=False)
        what = axis_label(kind, task, metric) if kind != "spectrum" else SPECTRUM_PLOTS[metric]
        bands = "" if kind == "spectrum" else (
            "bands: 95% paired intervals of the change from unedited; "
            if all(r.stderr is None for r in recs) else "bands: 95% intervals (±1.96 s.e.); ")
        title = f"{what} vs number of edits · {model} · {dataset}\n" \
                f"{bands}dashed: PRUNE at evaluation"
        path = plots / _safe(name)
        _plot(path, title, ylabel, recs, kind == "spectrum", identity=identity, bounds=bounds)
        written.append(path)
    written += _views(plots, records)
    if plots.is_dir():
        keep = {p.with_suffix(f".{fmt}").name for p in written for fmt in FORMATS}
        for stale in plots.iterdir():
            if stale.suffix.lstrip(".") in FORMATS and stale.name not in keep:
                stale.unlink()
    return written
