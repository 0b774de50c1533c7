/* seqedit-bench leaderboard: sorting, filters and the curve chart (plain DOM, no network). */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("leaderboard-data").textContent);
  var SVG = "http://www.w3.org/2000/svg";
  var COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
  var rowsById = {};
  DATA.rows.forEach(function (r) { rowsById[r.id] = r; });
  var groupOrder = {};
  DATA.groups.forEach(function (g, i) { groupOrder[g.slug] = i; });

  var table = document.getElementById("leaderboard");
  var tbody = table.tBodies[0];
  var sortState = {key: "rank", dir: 1};

  function cellValue(tr, index, type) {
    var raw = tr.cells[index].getAttribute("data-sort");
    if (type === "number") {
      return raw === "" || raw === null ? null : parseFloat(raw);
    }
    return raw || "";
  }

  function sortBy(th) {
    var key = th.getAttribute("data-key");
    var type = th.getAttribute("data-type");
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var dir = sortState.key === key ? -sortState.dir : (type === "number" ? -1 : 1);
    if (key === "rank") { dir = sortState.key === key ? -sortState.dir : 1; }
    sortState = {key: key, dir: dir};
    var trs = Array.prototype.slice.call(tbody.rows);
    trs.sort(function (a, b) {
      if (key !== "group") {
        var g = groupOrder[a.dataset.group] - groupOrder[b.dataset.group];
        if (g !== 0) { return g; }  /* ranks hold only within a group */
      }
      var va = cellValue(a, index, type), vb = cellValue(b, index, type);
      if (va === null && vb === null) { return 0; }
      if (va === null) { return 1; }  /* missing values last */
      if (vb === null) { return -1; }
      if (va < vb) { return -dir; }
      if (va > vb) { return dir; }
      return parseInt(a.dataset.rank, 10) - parseInt(b.dataset.rank, 10);
    });
    trs.forEach(function (tr) { tbody.appendChild(tr); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
  }

  Array.prototype.forEach.call(table.querySelectorAll("th.sortable"), function (th) {
    th.addEventListener("click", function () { sortBy(th); });
  });

  var filters = Array.prototype.slice.call(document.querySelectorAll("#controls select"));
  function applyFilters() {
    Array.prototype.forEach.call(tbody.rows, function (tr) {
      var shown = filters.every(function (sel) {
        return !sel.value || tr.dataset[sel.getAttribute("data-field")] === sel.value;
      });
      tr.hidden = !shown;
    });
    drawChart();
  }
  filters.forEach(function (sel) { sel.addEventListener("change", applyFilters); });

  /* ------------------------------------------------------------------ chart */
  var metricSelect = document.getElementById("chart-metric");
  var chart = document.getElementById("chart");

  function svg(name, attrs, parent) {
    var el = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(el); }
    return el;
  }

  function text(parent, x, y, content, attrs) {
    var t = svg("text", Object.assign({x: x, y: y}, attrs || {}), parent);
    t.textContent = content;
    return t;
  }

  function selectedRows() {
    return Array.prototype.filter.call(document.querySelectorAll(".plot-toggle"), function (box) {
      return box.checked && !box.closest("tr").hidden;
    }).map(function (box) { return rowsById[box.value]; });
  }

  function niceTicks(lo, hi, count) {
    var span = hi - lo || Math.abs(hi) || 1;
    var step = Math.pow(10, Math.floor(Math.log10(span / count)));
    [1, 2, 2.5, 5, 10].some(function (m) {
      if (span / (step * m) <= count) { step = step * m; return true; }
      return false;
    });
    var ticks = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      ticks.push(Math.round(v / step) * step);
    }
    return ticks;
  }

  function label(v) {
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e4 || a < 1e-2)) { return v.toExponential(1); }
    return String(Math.round(v * 100) / 100);
  }

  function drawChart() {
    while (chart.firstChild) { chart.removeChild(chart.firstChild); }
    var metric = metricSelect.value;
    var rows = selectedRows().filter(function (r) { return r.curves[metric]; });
    var W = 900, H = 380, m = {l: 70, r: 300, t: 20, b: 50};
    var root = svg("svg", {viewBox: "0 0 " + W + " " + H, width: W, height: H, "class": "chart"}, chart);
    if (!rows.length) {
      text(root, m.l, H / 2, "Tick rows in the table to plot their curves.", {"class": "empty"});
      return;
    }
    var xs = [], ys = [];
    rows.forEach(function (r) {
      r.curves[metric].forEach(function (p) {
        xs.push(p[0]);
        ys.push(p[1]);
        if (p[2] !== null) { ys.push(p[2], p[3]); }
      });
    });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    var pad = (y1 - y0) * 0.05 || Math.abs(y1) * 0.05 || 1;
    y0 -= pad; y1 += pad;
    var pw = W - m.l - m.r, ph = H - m.t - m.b;
    function X(v) { return m.l + (x1 === x0 ? pw / 2 : (v - x0) / (x1 - x0) * pw); }
    function Y(v) { return m.t + ph - (v - y0) / (y1 - y0) * ph; }
    var axes = svg("g", {"class": "axes"}, root);
    var checkpoints = Array.from(new Set(xs)).sort(function (a, b) { return a - b; });
    checkpoints.forEach(function (n) {
      svg("line", {x1: X(n), x2: X(n), y1: m.t, y2: m.t + ph, "class": "grid"}, axes);
      text(axes, X(n), m.t + ph + 16, String(n), {"text-anchor": "middle"});
    });
    niceTicks(y0, y1, 6).forEach(function (v) {
      svg("line", {x1: m.l, x2: m.l + pw, y1: Y(v), y2: Y(v), "class": "grid"}, axes);
      text(axes, m.l - 6, Y(v) + 4, label(v), {"text-anchor": "end"});
    });
    svg("rect", {x: m.l, y: m.t, width: pw, height: ph, "class": "frame"}, axes);
    text(axes, m.l + pw / 2, H - 10, "number of edits", {"text-anchor": "middle"});
    var option = metricSelect.options[metricSelect.selectedIndex];
    text(axes, 14, m.t + ph / 2, option ? option.text : metric,
         {"text-anchor": "middle", transform: "rotate(-90 14 " + (m.t + ph / 2) + ")"});
    rows.forEach(function (r, i) {
      var colour = COLOURS[i % COLOURS.length];
      var pts = r.curves[metric];
      var g = svg("g", {"class": "series", "data-row": r.id}, root);
      var banded = pts.filter(function (p) { return p[2] !== null; });
      if (banded.length > 1) {
        var upper = banded.map(function (p) { return X(p[0]) + "," + Y(p[3]); });
        var lower = banded.slice().reverse().map(function (p) { return X(p[0]) + "," + Y(p[2]); });
        svg("polygon", {points: upper.concat(lower).join(" "), fill: colour, "class": "band"}, g);
      }
      svg("polyline", {points: pts.map(function (p) { return X(p[0]) + "," + Y(p[1]); }).join(" "),
                       stroke: colour, "class": "line"}, g);
      pts.forEach(function (p) {
        svg("circle", {cx: X(p[0]), cy: Y(p[1]), r: 3, fill: colour}, g);
      });
      var ly = m.t + 12 + i * 18;
      svg("line", {x1: W - m.r + 16, x2: W - m.r + 40, y1: ly - 4, y2: ly - 4, stroke: colour,
                   "class": "line"}, root);
      text(root, W - m.r + 46, ly, r.editor + " · " + r.restraint + " · " + r.model,
           {"class": "legend"});
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll(".plot-toggle"), function (box) {
    box.addEventListener("change", drawChart);
  });
  metricSelect.addEventListener("change", drawChart);

  /* default: the first group's top three rows are plotted */
  var first = DATA.groups.length ? DATA.groups[0].slug : null;
  Array.prototype.slice.call(tbody.rows).filter(function (tr) {
    return tr.dataset.group === first;
  }).slice(0, 3).forEach(function (tr) { tr.querySelector(".plot-toggle").checked = true; });
  drawChart();
}());
