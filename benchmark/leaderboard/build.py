"""``seqedit leaderboard build``: a static site (HTML, CSS, JS, JSON; nothing fetched from a
network) ranking rows within comparable groups.

Layout of the site folder::

    index.html          the table, filters and the chart (data embedded, works from file://)
    data.json           the same data for other tools
    static/             app.js, style.css
    provenance/<source>/<cell folder>.html   (and .json: the provenance file as published)

Every folder is validated first (:func:`benchmark.validate.validate`); one invalid folder
and nothing is written. Output is deterministic: the same folders give the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from benchmark import SUITE_VERSION
from benchmark.core.errors import DataError
from benchmark.evaluation import LOWER_IS_BETTER
from benchmark.leaderboard.rows import Figure, Row, rank, rows_of
from benchmark.plotting import axis_label
from benchmark.validate import InvalidResults, validate

STATIC = Path(__file__).resolve().parent / "static"
#: the committed result folders the project's site is built from (``nox -s leaderboard``)
#: and the folder it is committed in, both relative to the repository root
SOURCES = tuple(f"results/{SUITE_VERSION}/{grid}" for grid in
                ("smoke", "embedded-long", "embedded-mend", "ci"))
SITE = "site"


@dataclass(frozen=True)
class Column:
    """A numeric column: ``key`` in a row's figures, its header, unit and better direction."""

    key: str
    label: str
    unit: str
    better: str  # "higher", "lower" or "" (no direction)
    digits: int = 1


@dataclass(frozen=True)
class Site:
    index: Path
    rows: int
    groups: int


def _signal_label(key: str) -> str:
    _, task, metric = key.split("/", 2)
    return f"Δ {task.replace('_', ' ')} {metric.replace('_', ' ')}"


def columns(rows: list[Row]) -> list[Column]:
    """The numeric columns the rows have (a Δ column per general signal present)."""
    cols = [Column("efficacy_tf", "Efficacy, teacher-forced", "%", "higher"),
            Column("efficacy_gen", "Efficacy, generation", "%", "higher"),
            Column("locality", "Locality", "%", "higher")]
    signals = sorted({k for r in rows for k in r.figures if k.startswith("delta:")})
    for key in signals:
        metric = key.rsplit("/", 1)[1]
        cols.append(Column(key, _signal_label(key.removeprefix("delta:")),
                           "from unedited", "lower" if metric in LOWER_IS_BETTER else "higher", 2))
    cols += [Column("kappa_growth", "κ growth", "× unedited", "", 2),
             Column("sigma_growth", "σ_max growth", "× unedited", "", 2),
             Column("collapse", "Collapse point", "edits", "higher", 0),
             Column("sec_per_edit", "Cost", "s / edit", "lower", 2)]
    return [c for c in cols if c.key.startswith("delta:") or c.key in ("efficacy_tf", "locality")
            or any(r.figures.get(c.key, Figure(None)).value is not None for r in rows)]


def _number(x: float | None, digits: int) -> str:
    if x is None:
        return "—"
    text = f"{x:.3g}" if x != 0 and (abs(x) >= 1e5 or abs(x) < 10 ** -digits) else f"{x:.{digits}f}"
    return text.replace("-", "−")


def _fmt(fig: Figure | None, digits: int) -> str:
    return _number(fig.value if fig else None, digits)


def _interval(fig: Figure | None, digits: int) -> str:
    if fig is None or fig.low is None or fig.high is None:
        return ""
    return f"[{_number(fig.low, digits)}, {_number(fig.high, digits)}]"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("benchmark.leaderboard", "templates"),
                      autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(fmt=_fmt, interval=_interval)
    return env


def _sources(dirs: list[Path]) -> list[tuple[str, Path]]:
    """A unique short name per folder (its own name, its parent's where names repeat)."""
    names = [d.name for d in dirs]
    out = []
    for d in dirs:
        name = d.name if names.count(d.name) == 1 else f"{d.parent.name}-{d.name}"
        if name in [n for n, _ in out]:
            raise DataError(d, "given twice")
        out.append((name, d))
    return out


def _metric_options(rows: list[Row]) -> list[dict[str, str]]:
    keys = sorted({k for r in rows for k in r.curves})
    order = {"editing": 0, "general": 1, "spectrum": 2}
    keys.sort(key=lambda k: (order.get(k.split("/")[0], 3), k))
    labels = {"spectrum/max/kappa_w": "κ(W), largest over edited matrices",
              "spectrum/max/sigma_max_w": "σ_max(W), largest over edited matrices"}
    return [{"key": k, "label": labels.get(k) or axis_label(*k.split("/", 2))} for k in keys]


def page_data(rows: list[Row], cols: list[Column]) -> dict[str, Any]:
    groups = {}
    for r in rows:
        groups.setdefault(r.group.slug(), {"slug": r.group.slug(), "label": r.group.label(),
                                           "short": f"G{len(groups) + 1}"})
    return {"rows": [r.as_json() for r in rows], "groups": list(groups.values()),
            "columns": [c.__dict__ for c in cols], "metrics": _metric_options(rows)}


@contextlib.contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """An empty folder beside ``out`` that replaces it when the block succeeds. A folder
    ``out`` that is not a site (no index.html and data.json) is refused, not replaced."""
    if out.exists() and any(out.iterdir()) and not (
            (out / "index.html").is_file() and (out / "data.json").is_file()):
        raise DataError(out, "holds files but no leaderboard site; refusing to replace it: "
                             "choose a new or empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        old = out.with_name(f"{out.name}.old-{os.getpid()}")
        if out.exists():
            os.rename(out, old)
        os.rename(stage, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def build_site(dirs: list[Path], out: Path) -> Site:
    """Validate ``dirs`` and write the site to ``out`` (replaced as a whole)."""
    dirs = [Path(d) for d in dirs]
    for d in dirs:
        if problems := validate(d):
            raise InvalidResults(d, problems)
    rows: list[Row] = []
    for source, d in _sources(dirs):
        rows += rows_of(d, source)
    if not rows:
        raise DataError(dirs[0], "no completed cells: nothing to rank")
    rows = rank(rows)
    cols = columns(rows)
    data = page_data(rows, cols)
    short = {g["slug"]: g["short"] for g in data["groups"]}
    env = _environment()
    out = Path(out)
    with _staged(out) as stage:
        (stage / "static").mkdir(parents=True)
        for asset in sorted(STATIC.iterdir()):
            shutil.copyfile(asset, stage / "static" / asset.name)
        (stage / "data.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        html = env.get_template("index.html").render(
            rows=rows, columns=cols, groups=data["groups"], short=short, data=data,
            metrics=data["metrics"], sources=[n for n, _ in _sources(dirs)])
        (stage / "index.html").write_text(html)
        page = env.get_template("provenance.html")
        for r in rows:
            folder = stage / "provenance" / r.source
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{r.folder}.json").write_text(
                json.dumps(r.provenance, indent=2, sort_keys=True) + "\n")
            (folder / f"{r.folder}.html").write_text(page.render(row=r, prov=r.provenance))
    return Site(out / "index.html", len(rows), len(data["groups"]))
