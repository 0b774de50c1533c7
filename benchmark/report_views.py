"""Figures across metrics and editors of one (model, dataset) of a results folder, written by
:func:`benchmark.report.write_plots` beside the per-metric plots (``<model>__<dataset>__view__
<name>.png``, SVG and PDF beside each):

- ``prune_minus_none``: PRUNE's evaluation variant minus ``none`` per checkpoint with its 95%
  interval (paired from ``tables/paired.csv`` where the folder has one, else ±1.96·√(s.e.² +
  s.e.²) of the two records), a panel per metric × editor;
- ``editors_by_restraint``: editors on shared axes, a panel per restraint, per headline metric;
- ``kappa_vs_general``: each general-ability signal against κ(W) (largest over the edited
  matrices), points along each trajectory, the unedited model marked;
- ``tradeoff``: efficacy against the change of each general signal at the last checkpoint;
- ``dw_vs_w0``: σ_max(ΔW) of each edited matrix over σ_max(W0) (PRUNE restrains only
  singular values of ΔW at or above σ_max(W0): ratio 1). Records keep σ_max(ΔW), its rank and
  Frobenius norm, not every singular value of ΔW, so the full spectrum cannot be drawn;
- ``per_layer_kappa``: κ(W) of each edited matrix (editors that edit several layers).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from benchmark.plotting import (
    REDUNDANT,
    Z95,
    _safe,
    axis_label,
    checkpoints_of,
    draw_series,
    identity_states,
    is_rate,
    legend_right,
    line_style,
    pyplot,
    save,
    series,
    style_axis,
)
from benchmark.results import Record

HEADLINE_EDITING = ("efficacy", "gen_efficacy", "generalization", "locality", "zsre_efficacy",
                    "zsre_gen_efficacy", "zsre_generalization", "zsre_locality")


def headline_signals(records: Sequence[Record]) -> list[tuple[str, str, str]]:
    """Headline (kind, task, metric): editing rates, then general signals (one perplexity)."""
    have = {(r.kind, r.task, r.metric) for r in records if r.kind != "spectrum"}
    editing = sorted((k for k in have if k[0] == "editing" and k[2] in HEADLINE_EDITING),
                     key=lambda k: HEADLINE_EDITING.index(k[2]))
    general = sorted(k for k in have if k[0] == "general" and k[2] not in REDUNDANT)
    return editing + general


def records_of(records: Sequence[Record], signal: tuple[str, str, str]) -> list[Record]:
    return [r for r in records if (r.kind, r.task, r.metric) == signal]


def _colours():
    return pyplot().rcParams["axes.prop_cycle"].by_key()["color"]


def series_name(key) -> str:
    editor, traj, variant, bs, *_ = key
    return f"{editor} · trajectory {traj} · eval {variant}" + (f" · batch {bs}" if bs != 1 else "")


def _grid(n: int, ncols: int = 3, w: float = 4.6, h: float = 3.6):
    plt = pyplot()
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def figure_legend(fig, axes) -> None:
    seen: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="upper center",
                   bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)


def styles_by_editor(records: Sequence[Record]):
    editors = sorted({r.editor for r in records})
    trajectories = sorted({r.trajectory for r in records})
    colours = _colours()
    markers = ["o", "s", "^", "D", "v", "P"]

    def style(key):
        editor, traj, variant, *_ = key
        return dict(colour=colours[editors.index(editor) % len(colours)],
                    marker=markers[trajectories.index(traj) % len(markers)],
                    style=line_style(variant))
    return style


def _paired(directory: Path) -> dict[tuple, tuple[float, float, float]]:
    path = directory / "tables" / "paired.csv"
    if not path.is_file():
        return {}
    import pandas as pd

    frame = pd.read_csv(path)
    frame = frame[frame["comparison"] == "prune_vs_none"]
    return {(r.cell, int(r.n_edits), r.variant, r.kind, r.task, r.metric):
            (float(r.delta), float(r.ci_low), float(r.ci_high)) for r in frame.itertuples()}


def prune_minus_none(records: Sequence[Record], title: str, paired: dict) -> object | None:
    variants = sorted({r.variant for r in records if r.variant.startswith("prune")})
    if not variants:
        return None
    signals = headline_signals(records)
    editors = sorted({r.editor for r in records})
    panels = [(e, s) for e in editors for s in signals]
    identity = identity_states(records)
    fig, axes = _grid(len(panels), ncols=min(4, len(signals)), w=4.2, h=3.2)
    colours = _colours()
    trajectories = sorted({r.trajectory for r in records})
    for ax, (editor, sig) in zip(axes, panels):
        recs = records_of(records, sig)
        index = {(r.cell, r.n_edits, r.variant): r for r in recs}
        for cell in sorted({r.cell for r in recs if r.editor == editor}):
            traj = next(r.trajectory for r in recs if r.cell == cell)
            for v_idx, variant in enumerate(variants):
                pts = _differences(index, cell, variant, sig, paired,
                                   sorted({r.n_edits for r in recs if r.cell == cell}), identity)
                if not pts:
                    continue
                colour = colours[trajectories.index(traj) % len(colours)]
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=_yerr(pts),
                            color=colour, marker="o", markersize=4, capsize=3,
                            linestyle="-" if v_idx == 0 else "--",
                            label=f"trajectory {traj}: {variant} − none")
        ax.axhline(0, color="grey", linewidth=1)
        style_axis(ax, [n for n in checkpoints_of(recs) if n > 0],
                   "Δ " + axis_label(*sig, with_task=False),
                   f"{editor} · {axis_label(*sig).split(' (')[0]}")
    how = "paired 95% intervals" if paired else "95% intervals ±1.96·√(s.e.²+s.e.²), unpaired"
    how += "; 0 without interval where the restraint did not act"
    fig.suptitle(f"{title}\nPRUNE at evaluation minus no restraint ({how})", fontsize=12)
    fig.tight_layout()
    figure_legend(fig, axes)
    return fig


def _differences(index: dict, cell: str, variant: str, sig, paired: dict,
                 checkpoints: list[int], identity: set) -> list[tuple]:
    """[(n, Δ, low, high)] of variant − none at each edited checkpoint of a cell (exactly 0
    where the restraint did not act: the two are one model)."""
    pts = []
    for n in checkpoints:
        a, b = index.get((cell, n, "none")), index.get((cell, n, variant))
        if n == 0 or a is None or b is None or a.value is None or b.value is None:
            continue
        if (cell, n, variant) in identity:
            pts.append((n, 0.0, 0.0, 0.0))
        elif (hit := paired.get((cell, n, variant, *sig))) is not None:
            pts.append((n, *hit))
        elif a.stderr is not None and b.stderr is not None:
            half, d = Z95 * math.hypot(a.stderr, b.stderr), b.value - a.value
            pts.append((n, d, d - half, d + half))
        else:
            pts.append((n, b.value - a.value, None, None))
    return pts


def _yerr(pts):
    if any(p[2] is None for p in pts):
        return None
    return [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]


def editors_by_restraint(records: Sequence[Record], title: str, sig) -> object:
    recs = records_of(records, sig)
    restraints = sorted({(r.trajectory, r.variant) for r in recs})
    fig, axes = _grid(len(restraints), ncols=4, w=4.0, h=3.4)
    colours = _colours()
    editors = sorted({r.editor for r in recs})
    shared = None
    for ax, (traj, variant) in zip(axes, restraints):
        mine = [r for r in recs if r.trajectory == traj and r.variant == variant]
        for key, pts in sorted(series(mine).items()):
            draw_series(ax, pts, colour=colours[editors.index(key[0]) % len(colours)],
                        label=key[0] + (f" (batch {key[3]})" if key[3] != 1 else ""),
                        rate=is_rate(sig[2]))
        style_axis(ax, checkpoints_of(mine), axis_label(*sig), f"trajectory {traj}, eval {variant}")
        shared = ax if shared is None else shared
        ax.sharey(shared) if ax is not shared else None
    fig.suptitle(f"{title}\neditors on shared axes, one panel per restraint", fontsize=12)
    fig.tight_layout()
    figure_legend(fig, axes)
    return fig


def _kappa_points(records: Sequence[Record]) -> dict[tuple, dict[int, float]]:
    out: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in records:
        if r.kind == "spectrum" and r.metric == "kappa_w" and r.value is not None:
            cur = out[(r.cell, r.variant)].get(r.n_edits)
            out[(r.cell, r.variant)][r.n_edits] = r.value if cur is None else max(cur, r.value)
    return out


def kappa_vs_general(records: Sequence[Record], title: str) -> object | None:
    kappa = _kappa_points(records)
    general = [s for s in headline_signals(records) if s[0] == "general"]
    if not kappa or not general:
        return None
    fig, axes = _grid(len(general))
    style = styles_by_editor(records)
    for ax, sig in zip(axes, general):
        recs = records_of(records, sig)
        curves: dict[tuple, list] = defaultdict(list)
        for r in sorted(recs, key=lambda r: r.n_edits):
            k = kappa.get((r.cell, r.variant), {}).get(r.n_edits)
            if k is not None and r.value is not None:
                key = (r.editor, r.trajectory, r.variant, r.batch_size, r.seed, r.timing)
                curves[key].append((k, r.value, r.stderr))
        for key, pts in sorted(curves.items()):
            s = style(key)
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts],
                        yerr=None if any(p[2] is None for p in pts) else [Z95 * p[2] for p in pts],
                        color=s["colour"], marker=s["marker"], linestyle=s["style"], markersize=4,
                        capsize=0, elinewidth=0.6, alpha=0.85, label=series_name(key))
            ax.plot([pts[0][0]], [pts[0][1]], marker="*", color="black", markersize=9,
                    linestyle="none", label="unedited (n = 0)")
        lo, hi = ax.get_xlim()
        wide = lo > 0 and hi / lo > 20
        if wide:
            ax.set_xscale("log")
        ax.set_xlabel("κ(W), largest over edited matrices" + (" (log scale)" if wide else ""))
        ax.set_ylabel(axis_label(*sig))
        ax.set_title(axis_label(*sig).split(" (")[0], fontsize=10)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{title}\ngeneral ability against κ(W) along each trajectory "
                 "(bars: 95% intervals)", fontsize=12)
    fig.tight_layout()
    figure_legend(fig, axes)
    return fig


def tradeoff(records: Sequence[Record], title: str) -> object | None:
    efficacy = [s for s in headline_signals(records) if s[0] == "editing" and "efficacy" in s[2]]
    general = [s for s in headline_signals(records) if s[0] == "general"]
    if not efficacy or not general:
        return None
    eff_sig = efficacy[0]
    fig, axes = _grid(len(general))
    style = styles_by_editor(records)
    last = {r.cell: max(x.n_edits for x in records if x.cell == r.cell) for r in records}
    index = {(r.cell, r.n_edits, r.variant, r.kind, r.task, r.metric): r for r in records}
    for ax, sig in zip(axes, general):
        for r in records_of(records, eff_sig):
            if r.n_edits != last[r.cell] or r.value is None:
                continue
            g = index.get((r.cell, r.n_edits, r.variant, *sig))
            g0 = index.get((r.cell, 0, "none", *sig))
            if g is None or g0 is None or g.value is None or g0.value is None:
                continue
            key = (r.editor, r.trajectory, r.variant, r.batch_size, r.seed, r.timing)
            s = style(key)
            xerr = (Z95 * math.hypot(g.stderr, g0.stderr)
                    if g.stderr is not None and g0.stderr is not None else None)
            yerr = None
            if r.stderr is not None:  # a rate's interval stays within [0, 100]
                yerr = [[min(Z95 * r.stderr, r.value)], [min(Z95 * r.stderr, 100.0 - r.value)]]
            ax.errorbar([g.value - g0.value], [r.value], xerr=xerr, yerr=yerr, color=s["colour"],
                        marker=s["marker"], markersize=6, capsize=2, linestyle="none",
                        mfc="none" if s["style"] == "--" else s["colour"], label=series_name(key))
        ax.axvline(0, color="grey", linewidth=1)
        ax.set_xlabel("Δ " + axis_label(*sig, with_task=False) + " from unedited")
        ax.set_ylabel(axis_label(*eff_sig))
        ax.set_title(axis_label(*sig).split(" (")[0], fontsize=10)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{title}\nefficacy against general-ability change at the last checkpoint "
                 "(hollow: PRUNE at evaluation; bars: 95%)", fontsize=12)
    fig.tight_layout()
    figure_legend(fig, axes)
    return fig


def dw_vs_w0(records: Sequence[Record], title: str) -> object | None:
    w0 = {(r.cell, r.task): r.value for r in records
          if r.kind == "spectrum" and r.metric == "sigma_max_w" and r.n_edits == 0
          and r.variant == "none" and r.value}
    dw = [r for r in records if r.kind == "spectrum" and r.metric == "sigma_max_dw"
          and r.variant == "none" and r.n_edits > 0 and r.value is not None and (r.cell, r.task) in w0]
    if not dw:
        return None
    editors = sorted({r.editor for r in dw})
    fig, axes = _grid(len(editors), ncols=1, w=9.0, h=3.8)
    colours = _colours()
    for ax, editor in zip(axes, editors):
        mine = [r for r in dw if r.editor == editor]
        keys = sorted({(r.trajectory, r.task) for r in mine})
        trajectories = sorted({k[0] for k in keys})
        for i, (traj, task) in enumerate(keys):
            pts = sorted((r.n_edits, r.value / w0[(r.cell, r.task)]) for r in mine
                         if r.trajectory == traj and r.task == task)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                    color=colours[i % len(colours)],
                    linestyle=["-", "--", ":", "-."][trajectories.index(traj) % 4],
                    label=f"{task} (trajectory {traj})")
        ax.axhline(1.0, color="black", linewidth=1.2, label="σ_max(W0): PRUNE's threshold")
        style_axis(ax, checkpoints_of(mine), "σ_max(ΔW) / σ_max(W0)", editor)
        ax.set_ylim(bottom=0)
        legend_right(ax)
    fig.suptitle(f"{title}\nlargest singular value of ΔW over σ_max(W0) per edited matrix "
                 "(no restraint at evaluation); PRUNE acts above 1.\nRecords keep σ_max(ΔW), its "
                 "rank and Frobenius norm, not every singular value of ΔW.", fontsize=11)
    fig.tight_layout()
    return fig


def per_layer_kappa(records: Sequence[Record], title: str, editor: str) -> object | None:
    recs = [r for r in records if r.kind == "spectrum" and r.metric == "kappa_w"
            and r.editor == editor and r.variant == "none" and r.value is not None]
    if len({r.task for r in recs}) < 2:
        return None
    trajectories = sorted({r.trajectory for r in recs})
    fig, axes = _grid(len(trajectories), ncols=1, w=8.0, h=3.6)
    colours = _colours()
    for ax, traj in zip(axes, trajectories):
        mine = [r for r in recs if r.trajectory == traj]
        for i, task in enumerate(sorted({r.task for r in mine})):
            pts = sorted((r.n_edits, r.value) for r in mine if r.task == task)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                    color=colours[i % len(colours)], label=task)
        style_axis(ax, checkpoints_of(mine), "κ(W) of the matrix", f"{editor}, trajectory {traj}")
        legend_right(ax)
    fig.suptitle(f"{title}\nκ(W) per edited matrix (no restraint at evaluation)", fontsize=12)
    fig.tight_layout()
    return fig


def write_views(plots: Path, records: Sequence[Record]) -> list[Path]:
    """Write every view of every (model, dataset) under ``plots``; PNG paths returned."""
    paired = _paired(plots.parent)
    by_pair: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        by_pair[(r.model, r.dataset)].append(r)
    written: list[Path] = []
    for (model, dataset), recs in sorted(by_pair.items()):
        if not any(r.n_edits > 0 for r in recs):
            continue
        title = f"{model} · {dataset}"
        figures = {"prune_minus_none": prune_minus_none(recs, title, paired),
                   "kappa_vs_general": kappa_vs_general(recs, title),
                   "tradeoff": tradeoff(recs, title),
                   "dw_vs_w0": dw_vs_w0(recs, title)}
        for sig in headline_signals(recs)[:1] + [s for s in headline_signals(recs) if s[0] == "general"][:1]:
            figures[f"editors_by_restraint__{sig[1]}__{sig[2]}"] = editors_by_restraint(
                recs, title, sig)
        for editor in sorted({r.editor for r in recs}):
            figures[f"per_layer_kappa__{editor}"] = per_layer_kappa(recs, title, editor)
        for name, fig in figures.items():
            if fig is not None:
                path = plots / _safe(f"{model}__{dataset}__view__{name}.png")
                save(fig, path)
                written.append(path)
    return written
