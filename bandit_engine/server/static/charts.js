/* Tiny hand-written SVG charts for the bandit-engine dashboard (no dependencies, no network).
 * Charts.lines(el, series, opts): series = [{name, color, points: [[x, y], ...]}], x categorical.
 * Charts.intervals(el, rows): rows = [{label, value, low, high}] as points with error bars.
 * Charts.bars(el, rows): rows = [{label, value}] as horizontal bars.
 * Every drawn mark carries class "mark" so a test can count what was drawn. */
"use strict";
var Charts = (function () {
  var NS = "http://www.w3.org/2000/svg";
  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

  function svg(el, w, h) {
    el.textContent = "";
    var s = document.createElementNS(NS, "svg");
    s.setAttribute("viewBox", "0 0 " + w + " " + h);
    el.appendChild(s);
    return s;
  }
  function add(parent, tag, attrs, text) {
    var n = document.createElementNS(NS, tag);
    for (var k in attrs) n.setAttribute(k, attrs[k]);
    if (text !== undefined) n.textContent = text;
    parent.appendChild(n);
    return n;
  }
  function extent(values) {
    var lo = Infinity, hi = -Infinity;
    values.forEach(function (v) { if (v !== null && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (lo === hi) { lo -= 0.5; hi += 0.5; }
    var pad = (hi - lo) * 0.08;
    return [lo - pad, hi + pad];
  }
  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) return "n/a";
    var a = Math.abs(v);
    if (a !== 0 && (a < 0.001 || a >= 1e6)) return v.toExponential(2);
    return (+v.toPrecision(3)).toString();
  }

  function lines(el, series, opts) {
    opts = opts || {};
    var W = 460, H = 200, L = 46, R = 10, T = 10, B = 34;
    var s = svg(el, W, H);
    var xs = [];
    series.forEach(function (se) { se.points.forEach(function (p) { if (xs.indexOf(p[0]) < 0) xs.push(p[0]); }); });
    xs.sort();
    var ys = [];
    series.forEach(function (se) { se.points.forEach(function (p) { ys.push(p[1]); }); });
    var e = extent(opts.zero ? ys.concat([0]) : ys);
    var X = function (x) { var i = xs.indexOf(x); return L + (xs.length > 1 ? i * (W - L - R) / (xs.length - 1) : (W - L - R) / 2); };
    var Y = function (y) { return T + (e[1] - y) * (H - T - B) / (e[1] - e[0]); };
    add(s, "line", {x1: L, y1: H - B, x2: W - R, y2: H - B, "class": "axis"});
    add(s, "line", {x1: L, y1: T, x2: L, y2: H - B, "class": "axis"});
    [e[0], (e[0] + e[1]) / 2, e[1]].forEach(function (v) { add(s, "text", {x: L - 4, y: Y(v) + 3, "text-anchor": "end"}, fmt(v)); });
    var step = Math.max(1, Math.ceil(xs.length / 6));
    // the first and last day labels are anchored inwards so the chart's edge does not clip them
    xs.forEach(function (x, i) { if (i % step === 0) add(s, "text", {x: X(x), y: H - B + 14, "text-anchor": i === 0 ? "start" : i === xs.length - 1 ? "end" : "middle"}, String(x).slice(5)); });
    series.forEach(function (se, k) {
      var color = se.color || PALETTE[k % PALETTE.length];
      var d = "";
      se.points.forEach(function (p, i) { if (p[1] !== null && isFinite(p[1])) d += (d ? "L" : "M") + X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1); });
      if (d) add(s, "path", {d: d, fill: "none", stroke: color, "stroke-width": 2, "class": "mark series", "data-series": se.name});
      se.points.forEach(function (p) {
        if (p[1] !== null && isFinite(p[1])) add(s, "circle", {cx: X(p[0]), cy: Y(p[1]), r: 2.5, fill: color, "class": "mark"});
      });
    });
    return s;
  }

  function intervals(el, rows) {
    var W = 460, rowH = 26, L = 170, R = 16, T = 8;
    var H = T + rows.length * rowH + 24;
    var s = svg(el, W, H);
    var vals = [0];
    rows.forEach(function (r) { vals.push(r.value, r.low, r.high); });
    var e = extent(vals);
    var X = function (v) { return L + (v - e[0]) * (W - L - R) / (e[1] - e[0]); };
    add(s, "line", {x1: X(0), y1: T, x2: X(0), y2: H - 20, "class": "zero"});
    [e[0], 0, e[1]].forEach(function (v) { add(s, "text", {x: X(v), y: H - 6, "text-anchor": "middle"}, fmt(v)); });
    rows.forEach(function (r, i) {
      var y = T + i * rowH + rowH / 2;
      add(s, "text", {x: L - 6, y: y + 3, "text-anchor": "end"}, r.label);
      var color = r.low !== null && r.low > 0 ? "#1b7a3a" : (r.high !== null && r.high < 0 ? "#b3261e" : "#555");
      if (r.low !== null && r.high !== null && isFinite(r.low) && isFinite(r.high))
        add(s, "line", {x1: X(r.low), y1: y, x2: X(r.high), y2: y, stroke: color, "stroke-width": 2, "class": "mark"});
      if (r.value !== null && isFinite(r.value))
        add(s, "circle", {cx: X(r.value), cy: y, r: 4, fill: color, "class": "mark"});
    });
    return s;
  }

  function bars(el, rows) {
    var W = 460, rowH = 18, L = 130, R = 60, T = 4;
    var H = T + rows.length * rowH + 6;
    var s = svg(el, W, H);
    var max = 0;
    rows.forEach(function (r) { max = Math.max(max, r.value); });
    rows.forEach(function (r, i) {
      var y = T + i * rowH;
      var w = max > 0 ? r.value * (W - L - R) / max : 0;
      add(s, "text", {x: L - 6, y: y + 12, "text-anchor": "end"}, r.label);
      add(s, "rect", {x: L, y: y + 2, width: Math.max(w, 1), height: rowH - 5, fill: "#4c78a8", "class": "mark"});
      add(s, "text", {x: L + w + 4, y: y + 12}, r.text !== undefined ? r.text : fmt(r.value));
    });
    return s;
  }

  return {lines: lines, intervals: intervals, bars: bars, fmt: fmt, palette: PALETTE};
})();
