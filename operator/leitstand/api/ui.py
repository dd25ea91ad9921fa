"""The live cluster map at ``/ui``: GPU type → spine → leaf group → nodes, the queue tree and the waiting jobs.

One static page, no build step and nothing fetched from elsewhere (the clusters
it runs in have no internet): its script reads the status API with the bearer
token the user pastes (or passes as ``#token=...``, which never reaches a server
log and is dropped from the address at once) and redraws every few seconds
without reloading. It sees exactly what the API lets that token see.

Leaf queues keep the colours the API gives them (``views.colours``); a node is
filled by the GPUs each queue's jobs hold on it, free GPUs stay clear. Above
``BIG`` nodes the spines start collapsed into one summary row each. The DOM
carries what the end-to-end tests read: ``data-spine``, ``data-leaf``,
``data-node`` / ``data-allocated``, ``data-queue`` / ``data-colour`` on the queue
tree, ``data-job`` / ``data-reason`` on waiting jobs, and ``data-loaded`` on the
body after the first draw. ``#node=NAME`` in the address selects a node.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Leitstand · cluster map</title>
<style>
  :root { --ink: #1c2430; --muted: #5b6573; --line: #e1e5ea; --card: #ffffff; --free: #ffffff; --page: #f4f6f8;
          font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: var(--page); font-size: 13px; }
  body { margin: 0; padding: 14px 20px 24px; }
  header { display: flex; align-items: baseline; gap: 16px; flex-wrap: wrap; margin-bottom: 10px; }
  h1 { font-size: 19px; margin: 0; font-weight: 650; letter-spacing: .2px; }
  h2 { font-size: 14px; margin: 0 0 8px; font-weight: 650; display: flex; align-items: baseline; gap: 8px; }
  h2 .count { font-weight: 500; color: var(--muted); font-size: 12px; }
  #status { color: var(--muted); font-size: 12px; }
  #status.error { color: #b42318; font-weight: 600; }
  #totals { display: flex; gap: 8px; flex-wrap: wrap; margin-left: auto; }
  .total { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 3px 9px; font-size: 12px; }
  .total b { font-variant-numeric: tabular-nums; }
  #login { display: none; margin: 8px 0 12px; }
  main { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 16px; align-items: start; }
  .scroll { overflow-x: auto; }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin-bottom: 14px; }
  .muted { color: var(--muted); }
  .num { font-variant-numeric: tabular-nums; }
  /* legend */
  .legend { display: flex; flex-wrap: wrap; gap: 4px 12px; margin: 0 0 10px; font-size: 12px; align-items: center; }
  .legend .item { display: inline-flex; align-items: center; gap: 5px; white-space: nowrap; }
  .swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; flex: none; border: 1px solid rgba(0,0,0,.18); }
  .swatch.free { background: var(--free); }
  .swatch.down { background: repeating-linear-gradient(135deg, #fff 0 2px, #d92d20 2px 3px); border-color: #d92d20; }
  /* hierarchy */
  .gputype { margin-bottom: 10px; }
  .gputype > h3 { font-size: 12px; text-transform: uppercase; letter-spacing: .6px; color: var(--muted); margin: 4px 0 6px; font-weight: 650; }
  details.spine { border: 1px solid var(--line); border-radius: 6px; margin-bottom: 6px; background: #fbfcfd; }
  details.spine[open] { background: #fff; }
  details.spine > summary { list-style: none; cursor: pointer; padding: 6px 10px; display: grid;
                            grid-template-columns: 14px 170px 1fr auto; gap: 2px 8px; align-items: center; }
  details.spine > summary::-webkit-details-marker { display: none; }
  details.spine > summary::before { content: "▸"; color: var(--muted); grid-row: 1; }
  details.spine[open] > summary::before { content: "▾"; }
  .spine-name { font-weight: 650; }
  .spine-meta { color: var(--muted); font-size: 12px; }
  .spine-gpus { font-size: 12px; text-align: right; white-space: nowrap; }
  .leafstrip { grid-column: 2 / 5; display: flex; gap: 3px; flex-wrap: wrap; }
  details.spine[open] .leafstrip { display: none; }
  .chip { flex: 1 1 0; max-width: 64px; min-width: 14px; height: 12px; border-radius: 2px; border: 1px solid #c9d0d8; background: var(--free); overflow: hidden; display: flex; }
  .leaves { padding: 2px 10px 8px 26px; }
  .leaf { display: flex; align-items: flex-start; gap: 10px; padding: 4px 0; border-top: 1px dashed var(--line); }
  .leaf:first-child { border-top: none; }
  .leaf-head { width: 140px; flex: none; font-size: 12px; }
  .leaves.compact .leaf { align-items: center; padding: 2px 0; }
  .leaves.compact .leaf-head { width: 160px; display: flex; align-items: baseline; gap: 6px; }
  .leaves.compact .leaf-sum { margin: 0; }
  .leaves.compact .stack { display: none; }
  .leaf-name { font-weight: 600; }
  .leaf-sum { color: var(--muted); font-size: 11px; margin: 1px 0 3px; }
  .stack { display: flex; height: 8px; width: 140px; border: 1px solid #c9d0d8; border-radius: 2px; background: var(--free); overflow: hidden; }
  .stack > span, .chip > span { display: block; height: 100%; }
  .nodes { display: flex; flex-wrap: wrap; gap: 6px; flex: 1; }
  .node { cursor: pointer; border: 1px solid #c3cad3; border-radius: 5px; background: #fff; outline-offset: 1px; }
  .node:hover, .node:focus-visible { border-color: var(--ink); }
  .node.selected { outline: 2px solid var(--ink); }
  .node.notready { border: 1px dashed #d92d20; background: repeating-linear-gradient(135deg, #fff 0 4px, #fde2e0 4px 6px); }
  .card-node { width: 80px; padding: 4px 5px 3px; }
  .gpus { display: grid; grid-template-columns: repeat(4, 1fr); gap: 2px; }
  .gpu { height: 13px; border-radius: 2px; border: 1px solid rgba(0,0,0,.16); background: var(--free); }
  .node-name { font-size: 10px; color: var(--muted); margin-top: 3px; text-align: center; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  .notready .node-name { color: #b42318; font-weight: 600; }
  .nodes.mini { gap: 2px; }
  .mini-node { box-sizing: border-box; width: 12px; height: 12px; border-radius: 2px; }
  /* tables */
  table { border-collapse: collapse; width: 100%; font-size: 12px; }
  th { font-weight: 600; color: var(--muted); font-size: 11px; text-align: right; padding: 4px 5px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  td { padding: 4px 5px; border-bottom: 1px solid #eef1f4; text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
  th.left, td.left { text-align: left; }
  td.wrap { white-space: normal; overflow-wrap: anywhere; }
  tr.sub td { border-bottom-style: dotted; }
  .qname { display: inline-flex; align-items: center; gap: 6px; }
  .qname .tree { color: #aab2bd; font-family: ui-monospace, monospace; }
  .qname.parent { font-weight: 650; }
  .qbar { position: relative; width: 64px; height: 10px; background: #f0f2f5; border-radius: 2px; display: inline-block; vertical-align: middle; }
  .qbar .fill { position: absolute; left: 0; top: 0; bottom: 0; border-radius: 2px 0 0 2px; }
  .qbar .want { position: absolute; top: 0; bottom: 0; background: repeating-linear-gradient(135deg, rgba(28,36,48,.28) 0 2px, transparent 2px 4px); }
  .qbar .mark { position: absolute; top: -3px; bottom: -3px; width: 0; border-left: 2px solid var(--ink); }
  .qbar .mark.fair { border-left: 2px dotted #0b5cad; }
  .barkey { font-size: 11px; color: var(--muted); margin: 6px 0 0; display: flex; gap: 14px; flex-wrap: wrap; }
  .barkey .k { display: inline-flex; gap: 5px; align-items: center; }
  .barkey .kfill { width: 14px; height: 8px; background: #7a8796; border-radius: 1px; }
  .barkey .kwant { width: 14px; height: 8px; background: repeating-linear-gradient(135deg, rgba(28,36,48,.35) 0 2px, transparent 2px 4px); }
  .barkey .kg { height: 12px; border-left: 2px solid var(--ink); }
  .barkey .kf { height: 12px; border-left: 2px dotted #0b5cad; }
  .kind { font-size: 10px; color: var(--muted); border: 1px solid var(--line); border-radius: 3px; padding: 0 3px; margin-left: 3px; }
  .reason { display: inline-block; padding: 1px 6px; border-radius: 9px; font-size: 11px; background: #eef1f4; }
  .reason.capacity { background: #fff1d6; color: #7a4b00; }
  .reason.quota { background: #e3edfb; color: #1d4f91; }
  .reason.never { background: #fde2e0; color: #912018; }
  .note { font-size: 12px; color: #7a4b00; background: #fff8e6; border: 1px solid #f3dfae; border-radius: 5px; padding: 5px 8px; margin-bottom: 8px; }
  .empty { color: var(--muted); font-size: 12px; padding: 6px 0; }
  /* the selected node */
  #node-panel h2 button { margin-left: auto; border: none; background: none; font-size: 16px; cursor: pointer; color: var(--muted); }
  #node-panel ul { list-style: none; margin: 6px 0 0; padding: 0; }
  #node-panel li { display: flex; align-items: center; gap: 8px; padding: 4px 0; border-bottom: 1px solid #eef1f4; font-size: 12px; }
  #node-panel li .who { flex: 1; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  #node-panel .hint { color: var(--muted); font-size: 12px; }
</style>
</head>
<body>
<header>
  <h1>Leitstand · cluster map</h1>
  <div id="status" role="status" aria-live="polite">loading…</div>
  <div id="totals" aria-label="GPUs by type"></div>
</header>
<form id="login"><label>Bearer token <input id="token" size="60" autocomplete="off"></label> <button>Show</button></form>
<main>
  <section id="map" class="card" aria-label="Nodes by GPU type, spine and leaf group"></section>
  <div>
    <section id="node-panel" class="card" aria-label="The selected node and its jobs"></section>
    <section class="card" aria-label="Queue tree"><h2>Queues <span class="count" id="queue-count"></span></h2>
      <div class="scroll"><table id="queues"><thead><tr><th class="left">Queue</th><th class="left">GPU type</th><th>Guaranteed</th><th>Fair share</th><th>Allocated</th><th>Pending</th><th class="left">Use</th></tr></thead><tbody></tbody></table></div>
      <div class="barkey"><span class="k"><span class="kfill"></span>allocated</span><span class="k"><span class="kwant"></span>pending (to the bar's end)</span><span class="k"><span class="kg"></span>guaranteed</span><span class="k"><span class="kf"></span>fair share</span></div>
    </section>
    <section class="card" aria-label="Waiting jobs"><h2>Waiting jobs <span class="count" id="waiting-count"></span></h2>
      <div id="jobs-note" class="note" hidden></div>
      <div class="scroll"><table id="waiting"><thead><tr><th class="left">Job</th><th class="left">Queue</th><th>GPUs</th><th class="left">Reason</th><th title="place in its queue">Position</th><th>Estimated start</th></tr></thead><tbody></tbody></table></div>
    </section>
  </div>
</main>
<script>
"use strict";
const BIG = 300;            // above this many nodes, spines start collapsed and nodes are drawn small
const PERIOD = 5000;        // ms between refreshes
const UNKNOWN = "#9aa3ad";  // GPUs of a job whose queue the map does not know
const MAX_WAITING = 300;    // rows of the waiting jobs' table

const params = new URLSearchParams(location.hash.slice(1));
if (params.get("token")) sessionStorage.setItem("leitstand-token", params.get("token"));
let token = sessionStorage.getItem("leitstand-token");
const state = { open: new Map(), selected: params.get("node"), texts: {}, data: null, drawn: false, colours: new Map() };
history.replaceState(null, "", location.pathname + (state.selected ? "#node=" + encodeURIComponent(state.selected) : ""));

const status = document.getElementById("status");
document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("leitstand-token", token);
  refresh();
});

function el(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") element.className = value;
    else if (key === "style") element.style.cssText = value;
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}
const fmt = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
const safe = (colour) => (/^#[0-9a-fA-F]{6}$/.test(colour || "") ? colour : UNKNOWN);

async function get(path) {
  const answer = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  const text = await answer.text();
  if (!answer.ok) {
    let detail = "";
    try { detail = JSON.parse(text).detail || ""; } catch (error) { detail = text.slice(0, 200); }
    const failure = new Error(`${path}: ${answer.status} ${detail}`);
    failure.status = answer.status;
    throw failure;
  }
  return text;
}

// ---- colours and shares ----------------------------------------------------------------------------------
function queueColours(queues) {
  const colours = new Map();
  for (const queue of queues) if (queue.colour) colours.set(queue.name, safe(queue.colour));
  return colours;
}
function nodeJobs(node) {
  if (Array.isArray(node.jobs)) return node.jobs;
  return node.allocated ? [{ namespace: "", name: "", kind: "", queue: node.queues[0] || null, gpus: node.allocated, replicas: 1 }] : [];
}
function sharesOf(nodes) {  // [queue, GPUs] held on these nodes, by queue name
  const shares = new Map();
  for (const node of nodes) for (const job of nodeJobs(node)) {
    if (!job.gpus) continue;
    const queue = job.queue || "";
    shares.set(queue, (shares.get(queue) || 0) + job.gpus);
  }
  return [...shares.entries()].sort((a, b) => a[0].localeCompare(b[0]));
}
function colourOf(queue) { return (queue && state.colours.get(queue)) || UNKNOWN; }
function segments(shares, total) {  // stacked spans, proportional to total
  return shares.map(([queue, gpus]) => el("span", { style: `width:${(100 * gpus / Math.max(total, 1)).toFixed(3)}%;background:${colourOf(queue)}` }));
}
function shareText(shares) { return shares.map(([queue, gpus]) => `${queue || "(no queue)"}: ${fmt(gpus)}`).join(", "); }

// ---- the map -----------------------------------------------------------------------------------------------
function nodeTitle(node) {
  const lines = [`${node.name} · ${node.gpuType || "no GPU type"} · ${node.allocated}/${node.gpus} GPUs allocated${node.ready ? "" : " · NOT READY"}`];
  for (const job of nodeJobs(node)) lines.push(`${job.namespace}/${job.name} (${job.queue || "no queue"}): ${job.gpus} GPUs`);
  return lines.join("\\n");
}
function nodeCell(node, big) {
  const jobs = nodeJobs(node);
  const dominant = [...jobs].sort((a, b) => b.gpus - a.gpus)[0];
  const classes = ["node", big ? "mini-node" : "card-node", node.ready ? "" : "notready", node.name === state.selected ? "selected" : ""];
  const cell = el("div", {
    class: classes.filter(Boolean).join(" "), "data-node": node.name, "data-allocated": node.allocated, "data-gpus": node.gpus,
    "data-queue-main": dominant && dominant.queue, "data-ready": node.ready ? "true" : "false",
    tabindex: "0", role: "button", title: nodeTitle(node), "aria-label": nodeTitle(node).replace(/\\n/g, "; "),
  });
  const ordered = [...jobs].filter((j) => j.gpus).sort((a, b) => (a.queue || "").localeCompare(b.queue || "") || b.gpus - a.gpus);
  if (big) {
    let at = 0;
    const stops = [];
    for (const job of ordered) {
      const from = 100 * at / Math.max(node.gpus, 1), to = 100 * Math.min(at + job.gpus, node.gpus) / Math.max(node.gpus, 1);
      stops.push(`${colourOf(job.queue)} ${from.toFixed(2)}% ${to.toFixed(2)}%`);
      at += job.gpus;
    }
    if (stops.length) cell.style.background = `linear-gradient(to top, ${stops.join(", ")}, #fff ${(100 * Math.min(at, node.gpus) / Math.max(node.gpus, 1)).toFixed(2)}%)`;
    return cell;
  }
  const slots = [];
  for (const job of ordered) for (let i = 0; i < job.gpus; i += 1) slots.push(colourOf(job.queue));
  const gpus = el("div", { class: "gpus" });
  for (let i = 0; i < node.gpus; i += 1) gpus.append(el("span", { class: "gpu", style: i < slots.length ? `background:${slots[i]}` : null }));
  cell.append(gpus, el("div", { class: "node-name" }, node.name));
  return cell;
}
function drawMap(cluster, queues) {
  const map = document.getElementById("map");
  const big = cluster.nodes.length > BIG;
  const byLeaf = new Map();
  for (const node of cluster.nodes) {
    if (!byLeaf.has(node.domain)) byLeaf.set(node.domain, []);
    byLeaf.get(node.domain).push(node);
  }
  const leafViews = new Map(cluster.domains.map((d) => [d.name, d]));
  const spines = cluster.spines && cluster.spines.length ? cluster.spines
    : [{ name: "", leaves: cluster.domains.map((d) => d.name), nodes: cluster.nodes.length, gpus: cluster.domains.reduce((s, d) => s + d.gpus, 0),
         allocated: cluster.domains.reduce((s, d) => s + d.allocated, 0), notReady: 0, gpuTypes: Object.keys(cluster.gpuTypes) }];
  const selectedNode = cluster.nodes.find((n) => n.name === state.selected);
  const legend = el("div", { class: "legend", "aria-label": "Colours of the leaf queues" },
    el("span", { class: "muted" }, "Queues:"),
    queues.filter((q) => q.colour).map((q) => el("span", { class: "item", "data-legend-queue": q.name }, el("span", { class: "swatch", style: `background:${safe(q.colour)}` }), q.name)),
    el("span", { class: "item" }, el("span", { class: "swatch free" }), "free GPU"),
    el("span", { class: "item" }, el("span", { class: "swatch down" }), "node not ready"));
  const groups = new Map();
  for (const spine of spines) {
    const type = (spine.gpuTypes || []).join(" + ") || "no GPU type";
    if (!groups.has(type)) groups.set(type, []);
    groups.get(type).push(spine);
  }
  const sections = [];
  for (const [type, members] of [...groups.entries()].sort()) {
    const numbers = cluster.gpuTypes[type];
    const nodeCount = members.reduce((s, m) => s + m.nodes, 0);
    const header = el("h3", {}, `${type} · ${fmt(nodeCount)} nodes` + (numbers ? ` · ${fmt(numbers.allocated)} / ${fmt(numbers.capacity)} GPUs allocated` : ""));
    const rows = members.map((spine) => {
      const leaves = spine.leaves.map((name) => ({ name, view: leafViews.get(name), nodes: byLeaf.get(name) || [] }));
      const open = state.open.has(spine.name) ? state.open.get(spine.name)
        : (!big || (selectedNode !== undefined && selectedNode.spine === spine.name));
      const strip = el("div", { class: "leafstrip", "aria-hidden": "true" }, leaves.map((leaf) => {
        const shares = sharesOf(leaf.nodes);
        const gpus = leaf.view ? leaf.view.gpus : 0;
        return el("span", { class: "chip", "data-leaf-chip": leaf.name, title: `${leaf.name || "(no leaf)"}: ${fmt(leaf.view && leaf.view.allocated)}/${fmt(gpus)} GPUs · ${shareText(shares) || "all free"}` }, segments(shares, gpus));
      }));
      const details = el("details", { class: "spine", "data-spine": spine.name, "data-leaves": spine.leaves.length, open },
        el("summary", { "aria-label": `spine ${spine.name || "(no spine)"}: ${spine.allocated} of ${spine.gpus} GPUs allocated` },
          el("span", { class: "spine-name" }, spine.name || "(no spine)"),
          el("span", { class: "spine-meta" }, `${spine.leaves.length} leaf group${spine.leaves.length === 1 ? "" : "s"} · ${fmt(spine.nodes)} nodes` + (spine.notReady ? ` · ${spine.notReady} not ready` : "")),
          el("span", { class: "spine-gpus" }, el("b", { class: "num" }, fmt(spine.allocated)), ` / ${fmt(spine.gpus)} GPUs`),
          strip),
        el("div", { class: big ? "leaves compact" : "leaves" }, leaves.map((leaf) => {
          const shares = sharesOf(leaf.nodes);
          const view = leaf.view || { allocated: 0, gpus: 0, wholeFreeNodes: 0 };
          return el("div", { class: "leaf", "data-leaf": leaf.name, "data-allocated": view.allocated, "data-gpus": view.gpus },
            el("div", { class: "leaf-head" },
              el("div", { class: "leaf-name" }, leaf.name || "(no leaf)"),
              el("div", { class: "leaf-sum", title: `${fmt(view.allocated)} of ${fmt(view.gpus)} GPUs allocated · ${fmt(view.wholeFreeNodes)} whole nodes free` },
                big ? `${fmt(view.allocated)}/${fmt(view.gpus)}` : [`${fmt(view.allocated)}/${fmt(view.gpus)} GPUs`, el("br"), `${fmt(view.wholeFreeNodes)} free node${view.wholeFreeNodes === 1 ? "" : "s"}`]),
              el("div", { class: "stack", title: shareText(shares) || "all free" }, segments(shares, view.gpus))),
            el("div", { class: big ? "nodes mini" : "nodes" }, leaf.nodes.map((node) => nodeCell(node, big))));
        })));
      details.addEventListener("toggle", () => state.open.set(spine.name, details.open));
      return details;
    });
    sections.push(el("div", { class: "gputype", "data-gpu-type": type }, header, rows));
  }
  map.replaceChildren(el("h2", {}, "Cluster", el("span", { class: "count" }, `${fmt(cluster.nodes.length)} nodes · ${fmt(cluster.domains.length)} leaf groups · ${fmt(spines.length)} spines`)), legend, ...sections);
}

// ---- the selected node ------------------------------------------------------------------------------------
function select(name) {
  state.selected = name;
  history.replaceState(null, "", location.pathname + (name ? "#node=" + encodeURIComponent(name) : ""));
  for (const cell of document.querySelectorAll(".node.selected")) cell.classList.remove("selected");
  if (name) for (const cell of document.querySelectorAll(".node")) if (cell.dataset.node === name) cell.classList.add("selected");
  drawPanel();
}
function drawPanel() {
  const panel = document.getElementById("node-panel");
  const cluster = state.data && state.data.cluster;
  const node = cluster && cluster.nodes.find((n) => n.name === state.selected);
  if (!node) {
    panel.removeAttribute("data-selected");
    panel.replaceChildren(el("h2", {}, "Node"), el("div", { class: "hint" }, "Hover over a node for its jobs; click it to keep them here."));
    return;
  }
  panel.dataset.selected = node.name;
  const jobs = nodeJobs(node);
  panel.replaceChildren(
    el("h2", {}, node.name, el("span", { class: "count" }, node.ready ? "ready" : "NOT READY"),
      el("button", { type: "button", "aria-label": "close", onclick: () => select(null) }, "\\u00d7")),
    el("div", { class: "muted" }, `${node.gpuType || "no GPU type"} · leaf ${node.domain || "—"} · spine ${node.spine || "—"} · ${node.allocated}/${node.gpus} GPUs allocated`),
    jobs.length
      ? el("ul", {}, jobs.map((job) => el("li", { "data-panel-job": `${job.namespace}/${job.name}` },
          el("span", { class: "swatch", style: `background:${colourOf(job.queue)}` }),
          el("span", { class: "who", title: `${job.kind} ${job.namespace}/${job.name}` }, `${job.namespace}/${job.name}`),
          el("span", { class: "muted" }, job.queue || "no queue"),
          el("b", { class: "num" }, `${job.gpus} GPU${job.gpus === 1 ? "" : "s"}`),
          el("span", { class: "muted num" }, `${job.replicas} pod${job.replicas === 1 ? "" : "s"}`))))
      : el("div", { class: "hint" }, `No jobs: all ${node.gpus} GPUs free.`));
}

// ---- the queue tree ---------------------------------------------------------------------------------------
function queueBar(n, colour) {
  const scale = Math.max(n.guaranteed, n.fairShare, n.allocated, 1);
  const at = (v) => `${(100 * Math.min(v, scale) / scale).toFixed(2)}%`;
  return el("span", { class: "qbar", title: `allocated ${n.allocated} · guaranteed ${n.guaranteed} · fair share ${n.fairShare} · pending ${n.pending}` },
    el("span", { class: "want", style: `left:${at(n.allocated)};width:${(100 * Math.min(n.pending, scale - Math.min(n.allocated, scale)) / scale).toFixed(2)}%` }),
    el("span", { class: "fill", style: `width:${at(n.allocated)};background:${colour}` }),
    n.guaranteed ? el("span", { class: "mark", style: `left:calc(${at(n.guaranteed)} - 1px)` }) : null,
    el("span", { class: "mark fair", style: `left:calc(${at(n.fairShare)} - 1px)` }));
}
function drawQueues(queues) {
  const body = document.querySelector("#queues tbody");
  const names = new Set(queues.map((q) => q.name));
  const children = new Map();
  for (const queue of queues) {
    const parent = queue.parent && names.has(queue.parent) ? queue.parent : "";
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(queue);
  }
  for (const list of children.values()) list.sort((a, b) => a.name.localeCompare(b.name));
  const rows = [];
  const seen = new Set();
  const walk = (queue, depth, last, prefix) => {
    if (seen.has(queue.name)) return;
    seen.add(queue.name);
    const leaf = queue.leaf !== undefined ? queue.leaf : !children.has(queue.name);
    const colour = leaf ? colourOf(queue.name) : "#7a8796";
    const types = Object.entries(queue.gpus).filter(([, n]) => n.guaranteed || n.fairShare || n.allocated || n.pending || n.limit).sort();
    const branch = depth === 0 ? "" : prefix + (last ? "└ " : "├ ");
    const label = el("span", { class: leaf ? "qname" : "qname parent" }, el("span", { class: "tree" }, branch),
      leaf ? el("span", { class: "swatch", style: `background:${colour}` }) : null, queue.name);
    const title = `${queue.name}${queue.parent ? " (under " + queue.parent + ")" : ""}${queue.namespaces.length ? " · namespaces: " + queue.namespaces.join(", ") : ""}`;
    (types.length ? types : [["—", null]]).forEach(([type, n], index) => {
      rows.push(el("tr", { "data-queue": queue.name, "data-parent": queue.parent || "", "data-depth": depth, "data-leaf-queue": leaf ? "true" : "false",
                           "data-colour": leaf ? colour : null, "data-gpu-type": n ? type : null, class: index ? "sub" : null, title },
        el("td", { class: "left" }, index ? "" : label),
        el("td", { class: "left" }, type),
        el("td", {}, n ? fmt(n.guaranteed) : "—"), el("td", {}, n ? fmt(n.fairShare) : "—"),
        el("td", {}, n ? el("b", {}, fmt(n.allocated)) : "—"), el("td", {}, n ? fmt(n.pending) : "—"),
        el("td", { class: "left" }, n ? queueBar(n, colour) : "")));
    });
    const kids = children.get(queue.name) || [];
    kids.forEach((kid, i) => walk(kid, depth + 1, i === kids.length - 1, depth === 0 ? "" : prefix + (last ? "  " : "│ ")));
  };
  const roots = children.get("") || [];
  roots.forEach((root, i) => walk(root, 0, i === roots.length - 1, ""));
  for (const queue of queues) walk(queue, 0, true, "");  // in a parent cycle: still listed
  body.replaceChildren(...rows);
  document.getElementById("queue-count").textContent = `${queues.length} queues · ${queues.filter((q) => q.leaf !== false && q.colour).length} leaves`;
}

// ---- the waiting jobs -------------------------------------------------------------------------------------
function reasonClass(reason) {
  if (["InsufficientCapacity", "TopologyUnsatisfiable", "WaitingForReclaim", "WaitingForOlderJob", "GangIncomplete"].includes(reason)) return "reason capacity";
  if (["QuotaExhausted", "OverLimit"].includes(reason)) return "reason quota";
  if (["Unschedulable", "QueueNotFound", "QueueConflict", "QueueCycle", "NoMatchingNodes", "RuntimeLimitTooLong"].includes(reason)) return "reason never";
  return "reason";
}
function startText(iso) {
  if (!iso) return "—";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return iso;
  const minutes = Math.round((when.getTime() - Date.now()) / 60000);
  const time = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  if (minutes <= 0) return `${time} (due)`;
  if (minutes < 120) return `${time} (in ${minutes} min)`;
  if (minutes < 24 * 60) return `${time} (in ${Math.floor(minutes / 60)} h ${minutes % 60} min)`;
  return `${when.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}
function drawWaiting(jobs, failure) {
  const note = document.getElementById("jobs-note");
  const body = document.querySelector("#waiting tbody");
  if (failure) {
    note.hidden = false;
    note.textContent = failure.status === 403 ? "This token may not list the jobs; the map and the queues are still live."
      : `Waiting jobs are not available: ${failure.message}`;
    body.replaceChildren();
    document.getElementById("waiting-count").textContent = "";
    return;
  }
  note.hidden = true;
  const waiting = jobs.filter((j) => j.phase === "Queued").sort((a, b) =>
    (a.queue || "~").localeCompare(b.queue || "~") || (a.position ?? Infinity) - (b.position ?? Infinity)
    || `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  document.getElementById("waiting-count").textContent = `${waiting.length} in the namespaces this token may list`;
  const rows = waiting.slice(0, MAX_WAITING).map((job) => el("tr", { "data-job": `${job.namespace}/${job.name}`, "data-reason": job.reason || "", "data-kind": job.kind, title: job.message || "" },
    el("td", { class: "left wrap" }, `${job.namespace}/${job.name} `, el("span", { class: "kind" }, job.kind || "TrainingJob")),
    el("td", { class: "left" }, el("span", { class: "qname" }, el("span", { class: "swatch", style: `background:${colourOf(job.queue)}` }), job.queue || "—")),
    el("td", {}, fmt(job.gpus)),
    el("td", { class: "left" }, el("span", { class: reasonClass(job.reason) }, job.reason || "—")),
    el("td", {}, job.position ?? "—"),
    el("td", { "data-estimated-start": job.estimatedStartTime || null, title: job.estimatedStartTime || "no estimate yet" }, startText(job.estimatedStartTime))));
  if (waiting.length > MAX_WAITING) rows.push(el("tr", {}, el("td", { class: "left muted", colspan: "6" }, `… and ${fmt(waiting.length - MAX_WAITING)} more`)));
  if (!waiting.length) rows.push(el("tr", {}, el("td", { class: "left muted", colspan: "6" }, "No job waits.")));
  body.replaceChildren(...rows);
}

// ---- refreshing -------------------------------------------------------------------------------------------
function drawTotals(cluster) {
  document.getElementById("totals").replaceChildren(...Object.entries(cluster.gpuTypes).sort().map(([type, n]) =>
    el("span", { class: "total", "data-total": type }, `${type}: `, el("b", {}, `${fmt(n.allocated)} / ${fmt(n.capacity)}`), ` allocated · ${fmt(n.wholeFreeNodes)} whole nodes free`)));
}
async function refresh() {
  if (!token) { document.getElementById("login").style.display = "block"; status.textContent = "a bearer token is needed"; return; }
  try {
    const [clusterText, queuesText, jobsResult] = await Promise.all([
      get("/api/v1/cluster"), get("/api/v1/queues"),
      get("/api/v1/jobs?phase=Queued").then((text) => ({ text }), (failure) => ({ failure })),
    ]);
    const jobsText = jobsResult.text ?? `failed:${jobsResult.failure && jobsResult.failure.message}`;
    const changed = !state.drawn || clusterText !== state.texts.cluster || queuesText !== state.texts.queues || jobsText !== state.texts.jobs;
    if (changed) {
      const cluster = JSON.parse(clusterText), queues = JSON.parse(queuesText);
      const jobs = jobsResult.text ? JSON.parse(jobsResult.text) : [];
      state.texts = { cluster: clusterText, queues: queuesText, jobs: jobsText };
      state.data = { cluster, queues, jobs };
      state.colours = queueColours(queues);
      const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.node : undefined;
      drawTotals(cluster);
      drawMap(cluster, queues);
      drawQueues(queues);
      drawWaiting(jobs, jobsResult.failure);
      drawPanel();
      if (focused) {  // keyboard users keep their place across a redraw
        const again = [...document.querySelectorAll(".node")].find((cell) => cell.dataset.node === focused);
        if (again) again.focus();
      }
      state.drawn = true;
    }
    status.classList.remove("error");
    state.updated = new Date().toLocaleTimeString([], { hour12: false });
    status.textContent = `live · updated ${state.updated}`;
    document.getElementById("login").style.display = "none";
    document.body.dataset.loaded = "true";
  } catch (error) {
    status.classList.add("error");
    const kept = state.drawn ? ` · showing the data of ${state.updated}` : "";
    status.textContent = `${String(error.message || error)}${kept} · retrying every ${PERIOD / 1000} s`;
    if (error.status === 401 || error.status === 403) document.getElementById("login").style.display = "block";
  }
}
document.getElementById("map").addEventListener("click", (event) => {
  const cell = event.target.closest(".node");
  if (cell) select(cell.dataset.node === state.selected ? null : cell.dataset.node);
});
document.getElementById("map").addEventListener("keydown", (event) => {
  const cell = event.target.closest(".node");
  if (cell && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); select(cell.dataset.node); }
});
async function live() {  // one request in flight at a time: a slow answer never lands over a newer one
  await refresh();
  setTimeout(live, PERIOD);
}
live();
</script>
</body>
</html>
"""
