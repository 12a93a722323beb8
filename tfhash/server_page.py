"""The page `tfhash serve` shows at `/`: pick a query (from --data's query split) or upload an image,
see its nearest codes as a grid with distances, green where a result shares the query's label.
Plain HTML and a little JavaScript, served by the same process (no build step)."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tfhash search</title>
<style>
  body { font-family: sans-serif; margin: 1.5em; color: #222; }
  #controls { display: flex; gap: 1em; align-items: center; flex-wrap: wrap; margin-bottom: 1em; }
  #grid { display: flex; flex-wrap: wrap; gap: 8px; }
  .cell { border: 3px solid #ccc; padding: 4px; text-align: center; font-size: 12px; width: 84px; }
  .cell img { width: 72px; height: 72px; image-rendering: pixelated; }
  .query { border-color: #333; }
  .match { border-color: #2a2; }
  .miss { border-color: #c22; }
  #status { color: #666; }
  #error { color: #c22; }
</style>
</head>
<body>
<h1>tfhash search</h1>
<p id="model">loading...</p>
<div id="controls">
  <label>query <select id="query"></select></label>
  <label>or an image <input type="file" id="upload" accept="image/*"></label>
  <label>k <input type="number" id="k" value="10" min="1" max="100" style="width: 4em"></label>
  <button id="search">Search</button>
  <span id="status"></span>
</div>
<p id="error"></p>
<div id="grid"></div>
<script>
const $ = (id) => document.getElementById(id);
let info = null;

async function call(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function cell(src, caption, kind) {
  const div = document.createElement("div");
  div.className = "cell " + kind;
  if (src && info.images) {
    const img = document.createElement("img");
    img.src = src;
    div.appendChild(img);
  }
  const text = document.createElement("div");
  text.textContent = caption;
  div.appendChild(text);
  return div;
}

function show(result, queryId, queryLabels) {
  const grid = $("grid");
  grid.innerHTML = "";
  if (queryId !== null) {
    grid.appendChild(cell(`/images/query/${queryId}.png`, `query ${queryId}`, "query"));
  }
  result.ids.forEach((id, n) => {
    const labels = result.labels ? result.labels[n] : null;
    const same = labels && queryLabels ? labels.some((l) => queryLabels.includes(l)) : null;
    const kind = "result " + (same === null ? "" : same ? "match" : "miss");
    grid.appendChild(cell(`/images/database/${id}.png`, `#${id}  d=${result.distances[n]}`, kind));
  });
  $("status").textContent = `${result.ids.length} results`;
}

async function search() {
  $("error").textContent = "";
  $("status").textContent = "searching...";
  const k = parseInt($("k").value, 10);
  try {
    const file = $("upload").files[0];
    if (file) {
      const form = new FormData();
      form.append("images", file);
      form.append("k", String(k));
      const body = await call("/search", { method: "POST", body: form });
      show(body.results[0], null, null);
    } else {
      const query = await call(`/queries/${$("query").value}`);
      const body = await call("/search", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ features: [query.features], k: k }),
      });
      show(body.results[0], query.id, query.labels);
    }
  } catch (err) {
    $("error").textContent = err.message;
    $("status").textContent = "";
  }
}

async function start() {
  info = await call("/info");
  const items = info.index_items.toLocaleString();
  $("model").textContent = `${info.name}: ${info.bits}-bit codes, ${items} items` +
    (info.data ? `, data ${info.data}` : "");
  if (info.queries) {
    const list = await call("/queries?count=100");
    for (const q of list.queries) {
      const option = document.createElement("option");
      option.value = q.index;
      option.textContent = `#${q.id} (label ${q.labels.join(",")})`;
      $("query").appendChild(option);
    }
  } else {
    $("query").disabled = true;
  }
  $("search").addEventListener("click", search);
}

start().catch((err) => { $("error").textContent = err.message; });
</script>
</body>
</html>
"""
