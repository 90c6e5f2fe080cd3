// The statemanager console (GET /ui). Plain JavaScript, no library, no inline script: the
// page's Content-Security-Policy allows scripts and requests to this origin only.
//
// It polls this node's JSON: /status/cluster every second (members, cache), /status/traffic
// every two seconds (the last five minutes of request rates and latencies), and, with admin access,
// /admin/namespaces and the open namespace's /admin/list every second. Every piece of data
// is written with textContent, never parsed as HTML: namespaces, keys and values are whatever
// clients stored. The admin secret is kept in memory only (gone on reload) and sent as
// `Authorization: Bearer`, never as a cookie; deletions also send the header
// `X-Statemanager-Console`, which a page of another origin cannot send without a CORS
// preflight that this server never grants.
"use strict";

(function () {
  const CLUSTER_EVERY_MS = 1000;
  const TRAFFIC_EVERY_MS = 2000;
  const ADMIN_EVERY_MS = 1000;

  const state = {
    secret: null, // the cluster secret, in memory only
    adminMode: null, // "open" | "secret" | "closed", from /status/cluster
    admin: false, // admin endpoints answer us
    openNs: null, // {namespace, protected} whose items are shown
    shown: new Map(), // key -> value the operator asked to see
    items: [], // the open namespace's items
    clockOffset: 0, // server time - browser time, seconds
    busy: {},
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "?";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
  }

  function duration(s) {
    if (s === null || s === undefined) return "-";
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + sec + "s";
    return sec + "s";
  }

  function when(t) {
    return t ? new Date(t * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "-";
  }

  function message(text) { $("message").textContent = text || ""; }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (state.secret) h["Authorization"] = "Bearer " + state.secret;
    return h;
  }

  async function getJson(path, options) {
    const r = await fetch(path, Object.assign({ cache: "no-store", credentials: "omit" }, options || {}));
    const body = await r.json().catch(() => null);
    if (!r.ok) {
      const err = new Error((body && body.error && body.error.message) || ("HTTP " + r.status));
      err.status = r.status;
      throw err;
    }
    return body;
  }

  // Runs `task` every `ms`, never two at once (a slow answer delays the next poll).
  function every(name, ms, task) {
    const run = async () => {
      if (!state.busy[name]) {
        state.busy[name] = true;
        try { await task(); } catch (e) { /* each task reports its own errors */ }
        state.busy[name] = false;
      }
      setTimeout(run, ms);
    };
    run();
  }

  // ---- cluster and cache -------------------------------------------------------------

  function cell(row, text, cls) { const td = el("td", text, cls); row.appendChild(td); return td; }

  function fillBar(percent) {
    const s = svg("svg", { class: "fill", viewBox: "0 0 100 10", preserveAspectRatio: "none" });
    s.appendChild(svg("rect", { class: "back", x: 0, y: 0, width: 100, height: 10 }));
    const w = Math.max(0, Math.min(100, percent || 0));
    s.appendChild(svg("rect", { class: "front" + (w > 90 ? " high" : ""), x: 0, y: 0, width: w, height: 10 }));
    return s;
  }

  function renderCluster(c) {
    $("node-name").textContent = "node " + c.node_id;
    const leader = c.leader ? "leader: node " + c.leader.id : "no leader known";
    $("cluster-summary").textContent = leader + " · term " + c.term + " · " + c.members.length + " members";
    const rows = $("members");
    rows.replaceChildren();
    const cache = $("cache-rows");
    cache.replaceChildren();
    for (const m of c.members) {
      const tr = el("tr", null, "member" + (m.up ? "" : " is-down") + (m.role === "leader" ? " is-leader" : ""));
      tr.dataset.id = m.id;
      tr.dataset.up = m.up ? "true" : "false";
      tr.dataset.role = m.up ? m.role : "down";
      cell(tr, m.id + (m.id === c.node_id ? " (this node)" : ""));
      cell(tr, m.up ? m.role + (m.state === "learner" ? " (learner)" : "") : "-");
      cell(tr, (m.api_addr || "?") + " · peer " + m.peer_addr);
      const health = cell(tr, "");
      if (!m.up) {
        health.appendChild(el("span", "down", "down"));
        health.title = m.error || "";
      } else if (m.ready) {
        health.appendChild(el("span", "up, ready", "up"));
      } else {
        health.appendChild(el("span", "up, not ready", "notready"));
        health.title = m.reason || "";
      }
      cell(tr, m.up ? m.term : "-", "num");
      cell(tr, m.up ? (m.commit_index ?? "-") : "-", "num");
      cell(tr, m.up ? m.applied_index : "-", "num");
      cell(tr, m.lag ?? "-", "num");
      const low = m.up && m.disk_free !== null && m.disk_reserve && m.disk_free < m.disk_reserve;
      cell(tr, m.up ? bytes(m.disk_free) + " / " + bytes(m.disk_reserve) : "-", low ? "num down" : "num");
      cell(tr, m.up ? duration(m.uptime) : "-", "num");
      cell(tr, m.up ? m.version : "-");
      rows.appendChild(tr);

      const cr = el("tr", null, "cache-row");
      cr.dataset.id = m.id;
      cell(cr, m.id);
      if (m.up && m.cache) {
        cell(cr, m.cache.items, "num");
        cell(cr, bytes(m.cache.size) + " / " + bytes(m.cache.max_size), "num");
        const f = cell(cr, "");
        f.appendChild(fillBar(m.cache.percent));
        f.appendChild(el("span", " " + m.cache.percent + " %", "muted"));
        cell(cr, m.cache.locks, "num");
        cell(cr, m.cache.waiting, "num");
        cell(cr, m.cache.hits, "num");
        cell(cr, m.cache.misses, "num");
      } else {
        const td = cell(cr, "down", "down");
        td.colSpan = 7;
      }
      cache.appendChild(cr);
    }
  }

  async function pollCluster() {
    try {
      const c = await getJson("/status/cluster");
      $("conn").textContent = "";
      renderCluster(c);
      if (state.adminMode !== c.admin) {
        state.adminMode = c.admin;
        updateAdmin();
      }
    } catch (e) {
      $("conn").textContent = "this node does not answer";
      $("conn").className = "badge down";
    }
  }

  // ---- traffic -----------------------------------------------------------------------

  function latency(s) {
    if (s === null) return "-";
    if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1e3).toFixed(1) + " ms";
    return s.toFixed(2) + " s";
  }

  function polyline(points, cls, maxY, width, height) {
    if (points.length < 2) return null;
    const t0 = points[0][0], t1 = points[points.length - 1][0];
    const span = Math.max(1, t1 - t0);
    const coords = points
      .filter((p) => p[1] !== null)
      .map(([t, y]) => ((t - t0) / span * width).toFixed(1) + "," + (height - (maxY > 0 ? y / maxY : 0) * (height - 2) - 1).toFixed(1));
    return coords.length > 1 ? svg("polyline", { class: cls, points: coords.join(" ") }) : null;
  }

  function renderTraffic(traffic) {
    const charts = $("charts");
    const names = Object.keys(traffic.endpoints).sort();
    charts.replaceChildren();
    if (!names.length) {
      charts.appendChild(el("p", "no requests in the last minutes (or not yet sampled)", "muted"));
      return;
    }
    const W = 260, H = 48;
    for (const name of names) {
      const points = traffic.endpoints[name];
      const rate = points.map((p) => [p.t, p.rate]);
      const p50 = points.map((p) => [p.t, p.p50]);
      const p99 = points.map((p) => [p.t, p.p99]);
      const last = points[points.length - 1];
      const box = el("div", null, "chart");
      box.dataset.endpoint = name;
      box.appendChild(el("div", name, "title"));
      const legend = el("div", null, "muted");
      legend.appendChild(el("span", last.rate.toFixed(1) + " req/s", "legend-rate"));
      legend.appendChild(document.createTextNode(" · "));
      legend.appendChild(el("span", "p50 " + latency(last.p50), "legend-p50"));
      legend.appendChild(document.createTextNode(" · "));
      legend.appendChild(el("span", "p99 " + latency(last.p99), "legend-p99"));
      box.appendChild(legend);
      const g1 = svg("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img", "aria-label": "request rate of " + name });
      g1.appendChild(svg("line", { class: "axis", x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5 }));
      const r = polyline(rate, "rate", Math.max(...rate.map((p) => p[1])), W, H);
      if (r) g1.appendChild(r);
      box.appendChild(g1);
      const g2 = svg("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img", "aria-label": "latency of " + name });
      g2.appendChild(svg("line", { class: "axis", x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5 }));
      const maxLat = Math.max(0, ...p99.filter((p) => p[1] !== null).map((p) => p[1]));
      for (const [pts, cls] of [[p50, "p50"], [p99, "p99"]]) {
        const l = polyline(pts, cls, maxLat, W, H);
        if (l) g2.appendChild(l);
      }
      box.appendChild(g2);
      charts.appendChild(box);
    }
  }

  async function pollTraffic() {
    try {
      renderTraffic(await getJson("/status/traffic"));
    } catch (e) { /* shown by the cluster poll */ }
  }

  // ---- admin: namespaces, items, values, delete, backup ---------------------------------

  function canTryAdmin() {
    return state.adminMode === "open" || (state.adminMode === "secret" && state.secret);
  }

  function updateAdmin() {
    const signedIn = !!state.secret;
    $("signin-form").hidden = signedIn || state.adminMode !== "secret";
    $("signout").hidden = !signedIn;
    $("namespaces").hidden = !state.admin;
    $("admin-hint").hidden = state.admin;
    const modes = { open: "admin endpoints open (no cluster_secret)", closed: "admin closed on this port (peer_tls only)", secret: signedIn ? "signed in" : "" };
    $("admin-state").textContent = modes[state.adminMode] || "";
    if (!state.admin) {
      state.namespacesText = null;
      state.itemsText = null;
      $("ns-rows").replaceChildren();
      $("item-rows").replaceChildren();
      $("items-panel").hidden = true;
      state.openNs = null;
      state.shown.clear();
      state.items = [];
    }
  }

  function nsLabel(ns) { return (ns.protected ? "🔒 " : "") + ns.namespace; }

  function sameNs(a, b) { return a && b && a.namespace === b.namespace && !!a.protected === !!b.protected; }

  function renderNamespaces(n) {
    state.clockOffset = n.now - Date.now() / 1000;
    // Re-render when the data changed, and every 5 s for the "next expiry" countdown.
    const text = JSON.stringify([n.namespaces, n.items, n.bytes, state.openNs, Math.floor(n.now / 5)]);
    if (text === state.namespacesText) return;
    state.namespacesText = text;
    const perNs = n.max_items_per_namespace;
    $("ns-summary").textContent = n.namespaces.length + " namespaces · " + n.items + " of " + n.max_items +
      " items (max_persistent_data_items) · " + bytes(n.bytes) +
      (perNs ? " · max_items_per_namespace " + perNs : "");
    const rows = $("ns-rows");
    rows.replaceChildren();
    for (const ns of n.namespaces) {
      const tr = el("tr", null, "ns-row" + (sameNs(ns, state.openNs) ? " selected" : ""));
      tr.dataset.namespace = ns.namespace;
      tr.dataset.protected = ns.protected ? "true" : "false";
      cell(tr, nsLabel(ns));
      cell(tr, ns.items + (perNs ? " / " + perNs : ""), "num");
      cell(tr, bytes(ns.bytes), "num");
      cell(tr, ns.next_expiry ? "in " + duration(ns.next_expiry - n.now) : "-", "num");
      tr.addEventListener("click", () => openNamespace({ namespace: ns.namespace, protected: ns.protected }));
      rows.appendChild(tr);
    }
  }

  function itemBody(key) {
    return JSON.stringify({ namespace: state.openNs.namespace, protected: !!state.openNs.protected, key: key });
  }

  async function showValue(key) {
    try {
      const v = await getJson("/admin/fetch", { method: "POST", headers: headers({ "Content-Type": "application/json" }), body: itemBody(key) });
      state.shown.set(key, v.data);
      renderItems();
    } catch (e) {
      message("fetching " + key + ": " + e.message);
    }
  }

  async function deleteItem(key) {
    if (!window.confirm("Delete the item '" + key + "' of " + nsLabel(state.openNs) + " on every node?")) return;
    try {
      await getJson("/admin/delete", {
        method: "POST",
        headers: headers({ "Content-Type": "application/json", "X-Statemanager-Console": "1" }),
        body: itemBody(key),
      });
      message("");
      state.shown.delete(key);
      state.itemsText = null;
      state.items = state.items.filter((i) => i.key !== key);
      renderItems();
      pollAdmin();
    } catch (e) {
      message("deleting " + key + ": " + e.message);
    }
  }

  function renderItems() {
    const rows = $("item-rows");
    rows.replaceChildren();
    const now = Date.now() / 1000 + state.clockOffset;
    for (const item of state.items) {
      const tr = el("tr", null, "item-row");
      tr.dataset.key = item.key;
      cell(tr, item.key);
      cell(tr, bytes(item.bytes), "num");
      cell(tr, when(item.timestamp));
      cell(tr, duration(item.expires_at - now), "num expires");
      const v = cell(tr, "");
      if (state.shown.has(item.key)) {
        v.appendChild(el("span", state.shown.get(item.key), "value"));
        const hide = el("button", "hide");
        hide.type = "button";
        hide.className = "hide-value";
        hide.addEventListener("click", () => { state.shown.delete(item.key); renderItems(); });
        v.appendChild(hide);
      } else {
        const show = el("button", "show value");
        show.type = "button";
        show.className = "show-value";
        show.addEventListener("click", () => showValue(item.key));
        v.appendChild(show);
      }
      const d = cell(tr, "");
      const del = el("button", "delete", "danger delete");
      del.type = "button";
      del.addEventListener("click", () => deleteItem(item.key));
      d.appendChild(del);
      rows.appendChild(tr);
    }
  }

  // The "expires in" column counts down between polls.
  function tickExpiry() {
    const now = Date.now() / 1000 + state.clockOffset;
    const byKey = new Map(state.items.map((i) => [i.key, i]));
    for (const tr of $("item-rows").children) {
      const item = byKey.get(tr.dataset.key);
      const td = tr.querySelector("td.expires");
      if (item && td) td.textContent = duration(item.expires_at - now);
    }
  }

  async function loadItems() {
    const ns = state.openNs;
    if (!ns) return;
    const list = await getJson("/admin/list", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ namespace: ns.namespace, protected: !!ns.protected, limit: 1000 }),
    });
    if (!sameNs(ns, state.openNs)) return;
    // Re-render only what changed, so buttons are not replaced under the operator's pointer.
    const text = JSON.stringify(list);
    if (text === state.itemsText) return;
    state.itemsText = text;
    state.items = list.keys;
    const keys = new Set(list.keys.map((k) => k.key));
    for (const k of [...state.shown.keys()]) if (!keys.has(k)) state.shown.delete(k);
    $("items-note").textContent = list.truncated ? "showing the first 1000 keys" : "";
    renderItems();
  }

  function openNamespace(ns) {
    state.openNs = ns;
    state.itemsText = null;
    state.shown.clear();
    state.items = [];
    $("items-title").textContent = nsLabel(ns);
    $("items-panel").hidden = false;
    renderItems();
    for (const tr of $("ns-rows").children) {
      tr.classList.toggle("selected", tr.dataset.namespace === ns.namespace && (tr.dataset.protected === "true") === !!ns.protected);
    }
    loadItems().catch((e) => message(e.message));
  }

  async function pollAdmin() {
    if (!canTryAdmin()) {
      if (state.admin) { state.admin = false; updateAdmin(); }
      return;
    }
    try {
      const n = await getJson("/admin/namespaces", { headers: headers() });
      if (!state.admin) { state.admin = true; updateAdmin(); }
      renderNamespaces(n);
      await loadItems();
    } catch (e) {
      if (e.status === 401 || e.status === 403) {
        state.secret = null;
        state.admin = false;
        updateAdmin();
        message("admin access refused: " + e.message);
      }
    }
  }

  async function downloadBackup() {
    message("taking a backup…");
    try {
      const r = await fetch("/admin/backup", { headers: headers(), cache: "no-store", credentials: "omit" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const blob = await r.blob();
      const url = URL.createObjectURL(blob);
      const a = el("a");
      a.href = url;
      a.download = "statemanager.smbackup";
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      message("");
    } catch (e) {
      message("backup: " + e.message);
    }
  }

  function start() {
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const s = $("secret").value;
      $("secret").value = "";
      if (!s) return;
      state.secret = s;
      message("");
      updateAdmin();
      pollAdmin();
    });
    $("signout").addEventListener("click", () => {
      state.secret = null;
      state.admin = false;
      updateAdmin();
    });
    $("items-close").addEventListener("click", () => {
      state.openNs = null;
      state.namespacesText = null;
      state.items = [];
      state.shown.clear();
      $("items-panel").hidden = true;
      for (const tr of $("ns-rows").children) tr.classList.remove("selected");
    });
    $("backup").addEventListener("click", downloadBackup);
    updateAdmin();
    every("cluster", CLUSTER_EVERY_MS, pollCluster);
    every("traffic", TRAFFIC_EVERY_MS, pollTraffic);
    every("admin", ADMIN_EVERY_MS, pollAdmin);
    setInterval(tickExpiry, 1000);
  }

  start();
})();
