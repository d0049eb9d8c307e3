/* bandit-engine dashboard: fetches the JSON the server computes with the library (the same code as
 * `bandit report --json`) and draws it. Every number shown carries data-k (its path in the JSON)
 * and data-v (the number itself), so a browser test can compare the page with the report.
 * The read token is kept in sessionStorage (or taken from the URL fragment, which browsers never
 * send to the server) and sent as a bearer header. */
"use strict";
(function () {
  var view = document.body.getAttribute("data-view");
  var $ = function (id) { return document.getElementById(id); };
  var fmt = Charts.fmt;

  function cell(tag, key, value, text) {
    var c = document.createElement(tag);
    if (key) { c.setAttribute("data-k", key); c.setAttribute("data-v", JSON.stringify(value)); }
    c.textContent = text !== undefined ? text : (typeof value === "number" ? fmt(value) : String(value === null ? "n/a" : value));
    return c;
  }
  function table(el, head, rows) {
    el.textContent = "";
    var tr = document.createElement("tr");
    head.forEach(function (h, i) { var th = document.createElement("th"); th.textContent = h; if (i === 0) th.className = "l"; tr.appendChild(th); });
    el.appendChild(tr);
    rows.forEach(function (r) { var tr = document.createElement("tr"); r.forEach(function (c) { tr.appendChild(c); }); el.appendChild(tr); });
  }
  function kpi(el, key, value, label, text) {
    var d = document.createElement("div"); d.className = "kpi";
    var b = cell("b", key, value, text); d.appendChild(b);
    var s = document.createElement("span"); s.textContent = label; d.appendChild(s);
    el.appendChild(d);
  }
  function showError(msg) { $("error").textContent = msg; }

  function token() {
    var m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem("bandit-token", decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname);  // drop it from the address bar
    }
    return sessionStorage.getItem("bandit-token");
  }

  function load(url, auth, done) {
    var x = new XMLHttpRequest();
    x.open("GET", url);
    if (auth) x.setRequestHeader("Authorization", "Bearer " + auth);
    x.onload = function () {
      if (x.status === 200) { done(JSON.parse(x.responseText)); return; }
      if (x.status === 401 || x.status === 403) { sessionStorage.removeItem("bandit-token"); askToken(); }
      var body = {};
      try { body = JSON.parse(x.responseText); } catch (e) { /* not JSON */ }
      showError("GET " + url + ": HTTP " + x.status + " " + (body.detail || body.message || ""));
    };
    x.onerror = function () { showError("GET " + url + ": the server did not answer"); };
    x.send();
  }

  function askToken() {
    $("content").hidden = true;
    $("login").hidden = false;
    $("login").onsubmit = function (ev) {
      ev.preventDefault();
      sessionStorage.setItem("bandit-token", $("token").value.trim());
      $("login").hidden = true;
      start();
    };
  }

  /* ---- the private view ---------------------------------------------------------------- */
  function byKey(rows, f) { return rows.filter(f); }

  function drawReport(data) {
    var rep = data.report;
    $("built").textContent = "report of " + rep.totals.decisions.toLocaleString() + " decisions, built " +
      new Date(data.built_at * 1000).toISOString().replace(".000", "") + " in " + data.refresh_seconds.toFixed(2) + " s";
    var k = $("kpis"); k.textContent = "";
    kpi(k, "totals/decisions", rep.totals.decisions, "decisions", rep.totals.decisions.toLocaleString());
    kpi(k, "totals/users", rep.totals.users, "users", rep.totals.users.toLocaleString());
    kpi(k, "totals/pending", rep.totals.pending, "pending (window open)", rep.totals.pending.toLocaleString());
    rep.groups.forEach(function (g) {
      kpi(k, "groups/" + g.group + "/users", g.users, g.group + " users" + (g.configured_share !== null ? " (configured " + fmt(g.configured_share) + ")" : ""));
    });
    var srm = $("srm");
    if (rep.srm) {
      srm.textContent = "Sample-ratio check: chi-square p = " + fmt(rep.srm.p_value) + (rep.srm.mismatch ? " - MISMATCH: users are not split as configured, uplifts are not trustworthy" : " (no mismatch)");
      srm.className = rep.srm.mismatch ? "note bad" : "note good";
    } else srm.textContent = rep.empty ? rep.message : "No holdout plan recorded: no uplift to show.";

    // uplift vs holdout, overall, every metric
    var ups = byKey(rep.uplift, function (u) { return u.breakdown === "overall"; });
    // relative uplift: one scale for metrics of different units (rates, revenue)
    Charts.intervals($("chart-uplift"), ups.map(function (u) {
      return {label: u.metric + " vs " + u.holdout, value: u.relative, low: u.relative_low, high: u.relative_high};
    }));
    table($("t-uplift"), ["metric", "holdout", "policy", "control", "uplift", "95% low", "95% high", "relative"],
      ups.map(function (u) {
        var p = "uplift/overall/all/" + u.holdout + "/" + u.metric + "/";
        return [cell("td", null, u.metric), cell("td", null, u.holdout), cell("td", p + "policy", u.policy),
          cell("td", p + "control", u.control), cell("td", p + "diff", u.diff), cell("td", p + "diff_low", u.diff_low),
          cell("td", p + "diff_high", u.diff_high), cell("td", p + "relative", u.relative)];
      }));

    // per day, per group
    var groups = rep.groups.map(function (g) { return g.group; });
    var legend = $("legend-ctr"); legend.textContent = "";
    groups.forEach(function (g, i) {
      var s = document.createElement("span"); var c = document.createElement("i");
      c.style.background = Charts.palette[i % Charts.palette.length]; s.appendChild(c); s.appendChild(document.createTextNode(g)); legend.appendChild(s);
    });
    [["click", "chart-ctr"], ["order", "chart-orders"], ["value", "chart-revenue"]].forEach(function (mc) {
      var rows = byKey(rep.segments, function (s) { return s.breakdown === "day" && s.metric === mc[0]; });
      var el = $(mc[1]);
      if (!rows.length) { el.textContent = "no " + mc[0] + " events logged"; return; }
      Charts.lines(el, groups.map(function (g, i) {
        return {name: g, color: Charts.palette[i % Charts.palette.length],
          points: rows.filter(function (r) { return r.group === g; }).map(function (r) { return [r.segment, r.value]; })};
      }), {zero: true});
      // the numbers behind the chart, for whoever reads the page without a mouse (and the tests)
      var t = document.createElement("table");
      el.appendChild(t);
      var days = [];
      rows.forEach(function (r) { if (days.indexOf(r.segment) < 0) days.push(r.segment); });
      days.sort();
      table(t, ["day"].concat(groups), days.map(function (d) {
        return [cell("td", null, d)].concat(groups.map(function (g) {
          var r = rows.filter(function (x) { return x.segment === d && x.group === g; })[0];
          return r ? cell("td", "segments/day/" + d + "/" + g + "/" + mc[0] + "/value", r.value) : cell("td", null, "");
        }));
      }));
    });

    // cross-platform conversion
    table($("t-conversion"), ["segment", "group", "users", "deal", "course", "both", "deal rate", "course rate"],
      rep.conversion.map(function (c) {
        var p = "conversion/" + c.segment + "/" + c.group + "/";
        return [cell("td", null, c.segment), cell("td", null, c.group), cell("td", p + "users", c.users),
          cell("td", p + "deal_converters", c.deal_converters), cell("td", p + "course_converters", c.course_converters),
          cell("td", p + "both_converters", c.both_converters), cell("td", p + "deal_rate", c.deal_rate),
          cell("td", p + "course_rate", c.course_rate)];
      }));

    // top bundles (the served policy's)
    var bundles = byKey(rep.segments, function (s) { return s.breakdown === "bundle" && s.metric === "reward" && s.group === "policy"; });
    bundles.sort(function (a, b) { return b.decisions - a.decisions; });
    Charts.bars($("chart-bundles"), bundles.slice(0, 10).map(function (b) {
      return {label: b.segment, value: b.decisions, text: b.decisions.toLocaleString() + " / " + fmt(b.value)};
    }));

    // model versions and learner lag
    var h = data.health, l = $("learner"); l.textContent = "";
    kpi(l, null, null, "model", data.learner.model_id);
    kpi(l, null, null, "updates learned", String(data.learner.n_learned));
    kpi(l, null, null, "pending in the engine", String(data.learner.pending));
    kpi(l, null, null, "learner lag (oldest pending decision)", data.learner.lag_seconds === null ? "none" : fmt(data.learner.lag_seconds) + " s");
    if (h.current) kpi(l, null, null, "policy version of the newest decision", h.current.policy_version);
    table($("t-models"), ["model", "decisions", "p < " + h.small_propensity, "ESS"],
      h.models.map(function (v) {
        return [cell("td", null, v.model_id), cell("td", null, v.decisions),
          cell("td", null, v.small_propensity_share), cell("td", null, v.effective_sample_size)];
      }));
    var p = $("propensity"); p.textContent = "";
    $("small-p").textContent = String(h.small_propensity);
    kpi(p, "health/small_propensity_share", h.small_propensity_share, "share of decisions with p < " + h.small_propensity);
    kpi(p, "health/effective_sample_size", h.effective_sample_size, "effective sample size");
    kpi(p, "health/decisions", h.decisions, "decisions with a propensity", h.decisions.toLocaleString());
    $("content").hidden = false;
    // when the figures were on the page, in ms since navigation started (the benchmark reads it)
    document.body.setAttribute("data-drawn-ms", String(performance.now()));
    document.body.setAttribute("data-drawn", "1");
  }

  /* ---- the public view ----------------------------------------------------------------- */
  function drawPublic(data) {
    if (!data.enabled) { showError(data.message); document.body.setAttribute("data-drawn", "1"); return; }
    var rel = data.release;
    $("built").textContent = "released " + new Date(data.released_at * 1000).toISOString().replace(".000", "");
    $("dp-about").textContent = "Each number is released with OpenDP's Laplace mechanism, epsilon " + fmt(rel.epsilon) +
      " in total (" + rel.composition + "), each user's decisions clipped to " + rel.cap +
      ". Within +/- the bound of the exact clipped value with probability " + (rel.releases.length ? rel.releases[0].confidence : 0.95) + ".";
    var ups = rel.releases.filter(function (r) { return r.kind === "uplift"; });
    Charts.intervals($("chart-dp"), ups.map(function (r) {
      var b = r.error_bound;
      return {label: r.label, value: r.value, low: b === null ? null : r.value - b, high: b === null ? null : r.value + b};
    }));
    table($("t-dp"), ["release", "value", "+/- bound", "epsilon"], rel.releases.map(function (r, i) {
      var k = "releases/" + i + "/";
      return [cell("td", null, r.label), cell("td", k + "value", r.value), cell("td", k + "error_bound", r.error_bound), cell("td", null, r.epsilon)];
    }));
    var l = $("ledger"); l.textContent = "";
    kpi(l, "ledger/spent_epsilon", rel.ledger.spent_epsilon, "epsilon spent");
    kpi(l, "ledger/total_epsilon", rel.ledger.total_epsilon, "epsilon budget");
    if (data.message) showError(data.message);
    $("content").hidden = false;
    document.body.setAttribute("data-drawn", "1");
  }

  function start() {
    if (view === "public") { load("/dashboard/public/data", null, drawPublic); return; }
    var t = token();
    if (!t) { askToken(); return; }
    load("/dashboard/data", t, drawReport);
  }
  start();
})();
