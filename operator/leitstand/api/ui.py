"""The live cluster map at ``/ui``: leaf groups x nodes, coloured by allocation and owning queue.

One static page; its script reads the status API with the bearer token the
user pastes (or passes as ``#token=...``, which never reaches a server log) and
refreshes every few seconds without reloading. It sees exactly what the API
lets that token see.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Leitstand · cluster map</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #1c2430; background: #f6f7f9; }
  body { margin: 0; padding: 16px 24px; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  #status { color: #5b6573; font-size: 13px; margin-bottom: 12px; }
  main { display: flex; gap: 24px; align-items: flex-start; }
  #map { flex: 1; }
  .leaf { display: flex; align-items: center; margin: 0 0 6px; }
  .leaf-name { width: 130px; font-size: 12px; font-weight: 600; }
  .leaf-sum { width: 90px; font-size: 11px; color: #5b6573; }
  .nodes { display: flex; flex-wrap: wrap; gap: 3px; }
  .node { width: 22px; height: 22px; border-radius: 3px; border: 1px solid #c8ced6; background: #fff; }
  .node.notready { border-color: #d33; border-style: dashed; }
  table { border-collapse: collapse; font-size: 12px; background: #fff; }
  th, td { padding: 4px 8px; border-bottom: 1px solid #e3e6ea; text-align: right; white-space: nowrap; }
  th:first-child, td:first-child { text-align: left; }
  .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
  #login { display: none; margin: 12px 0; }
</style>
</head>
<body>
<h1>Leitstand · cluster map</h1>
<div id="status">loading…</div>
<form id="login"><label>Bearer token <input id="token" size="60" autocomplete="off"></label> <button>Show</button></form>
<main>
  <section id="map" aria-label="nodes by leaf group"></section>
  <section><table id="queues"><thead><tr><th>queue</th><th>GPU type</th><th>guaranteed</th><th>fair share</th><th>allocated</th><th>pending</th></tr></thead><tbody></tbody></table></section>
</main>
<script>
"use strict";
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) { sessionStorage.setItem("leitstand-token", fromHash); history.replaceState(null, "", location.pathname); }
let token = sessionStorage.getItem("leitstand-token");
const status = document.getElementById("status");
document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("leitstand-token", token);
  refresh();
});
function hue(name) { let h = 0; for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 360; return h; }
function colour(node) {
  if (!node.gpus || !node.allocated) return "#ffffff";
  const share = node.allocated / node.gpus;
  const h = node.queues.length ? hue(node.queues[0]) : 210;
  return `hsl(${h} 70% ${92 - Math.round(share * 45)}%)`;
}
async function get(path) {
  const answer = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  if (!answer.ok) throw new Error(`${path}: ${answer.status} ${(await answer.json()).detail || ""}`);
  return answer.json();
}
function drawMap(cluster) {
  const map = document.getElementById("map");
  map.replaceChildren();
  for (const domain of cluster.domains) {
    const row = document.createElement("div");
    row.className = "leaf";
    row.dataset.leaf = domain.name;
    row.innerHTML = `<div class="leaf-name"></div><div class="leaf-sum"></div><div class="nodes"></div>`;
    row.children[0].textContent = domain.name || "(no leaf)";
    row.children[1].textContent = `${domain.allocated}/${domain.gpus} GPUs`;
    for (const node of cluster.nodes.filter((n) => n.domain === domain.name)) {
      const cell = document.createElement("div");
      cell.className = node.ready ? "node" : "node notready";
      cell.dataset.node = node.name;
      cell.dataset.allocated = node.allocated;
      cell.style.background = colour(node);
      cell.title = `${node.name}: ${node.allocated}/${node.gpus} ${node.gpuType || ""} ${node.queues.join(", ")}`;
      row.children[2].appendChild(cell);
    }
    map.appendChild(row);
  }
}
function drawQueues(queues) {
  const body = document.querySelector("#queues tbody");
  body.replaceChildren();
  for (const queue of queues) {
    for (const [type, n] of Object.entries(queue.gpus)) {
      if (!n.guaranteed && !n.allocated && !n.fairShare && !n.pending) continue;
      const row = document.createElement("tr");
      row.dataset.queue = queue.name;
      row.innerHTML = `<td><span class="swatch"></span></td><td></td><td></td><td></td><td></td><td></td>`;
      row.children[0].appendChild(document.createTextNode(queue.name));
      row.children[0].firstChild.style.background = `hsl(${hue(queue.name)} 70% 55%)`;
      [type, n.guaranteed, n.fairShare, n.allocated, n.pending].forEach((v, i) => { row.children[i + 1].textContent = v; });
      body.appendChild(row);
    }
  }
}
async function refresh() {
  if (!token) { document.getElementById("login").style.display = "block"; status.textContent = "a bearer token is needed"; return; }
  try {
    const [cluster, queues] = await Promise.all([get("/api/v1/cluster"), get("/api/v1/queues")]);
    drawMap(cluster);
    drawQueues(queues);
    const types = Object.entries(cluster.gpuTypes).map(([t, n]) => `${t}: ${n.allocated}/${n.capacity} allocated, ${n.wholeFreeNodes} whole nodes free`);
    status.textContent = `${cluster.nodes.length} nodes · ${types.join(" · ")} · updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (error) {
    status.textContent = String(error);
    document.getElementById("login").style.display = "block";
  }
}
refresh();
setInterval(refresh, 5000);
</script>
</body>
</html>
"""
