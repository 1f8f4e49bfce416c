/* Live run panel: follows /workflows/runs/<id>/events (server-sent events) and redraws. */
(function () {
  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  var WORDS = {queued: "waiting in the queue", running: "running", success: "finished",
               error: "failed", interrupted: "interrupted", cancelled: "cancelled", unknown: "unknown"};

  function draw(panel, state) {
    panel.dataset.status = state.status;
    var pct = Math.round(state.percent || 0);
    panel.querySelector("[data-percent]").textContent = pct + "%";
    var bar = panel.querySelector("[data-bar]");
    bar.style.width = pct + "%";
    bar.parentElement.className = "bar" + (state.status === "success" ? " ok" : (state.status === "error" || state.status === "interrupted") ? " bad" : "");
    var word = WORDS[state.status] || state.status;
    if (state.status === "queued" && state.queue_position) { word += " (position " + state.queue_position + ")"; }
    panel.querySelector("[data-status]").textContent = word;
    var error = panel.querySelector("[data-error]");
    error.textContent = state.error && state.status !== "interrupted" ? state.error : "";
    var list = panel.querySelector("[data-nodes]");
    list.innerHTML = (state.nodes || []).map(function (n) {
      var count = n.max > 1 ? n.value + "/" + n.max : "";
      var steps = n.state === "running" && count ? count : (count ? n.state + " " + count : n.state);
      return '<li data-node="' + esc(n.node_id) + '" data-state="' + esc(n.state) + '"><span class="id">#' + esc(n.node_id) +
        '</span><span class="name">' + esc(n.title) + '</span><span class="bar"><span style="width:' + n.percent +
        '%"></span></span><span class="state">' + esc(steps) + "</span></li>";
    }).join("");
    var out = panel.querySelector("[data-outputs]");
    var files = [];
    Object.keys(state.outputs || {}).forEach(function (node) {
      (state.outputs[node].images || []).forEach(function (f) { if (f.url) { files.push(f); } });
    });
    out.innerHTML = files.map(function (f) {
      var thumb = f.url.replace("/gallery/item/", "/gallery/thumb/");
      return '<a href="' + esc(f.url) + '" data-output="' + esc(f.filename) + '"><img alt="' + esc(f.filename) + '" src="' + esc(thumb) + '"></a>';
    }).join("");
    var cancel = panel.querySelector("[data-cancel]");
    if (cancel && (state.status === "success" || state.status === "error" || state.status === "interrupted" || state.status === "unknown")) {
      cancel.disabled = true;
    }
  }

  function follow(panel) {
    if (panel.dataset.following) { return; }
    panel.dataset.following = "1";
    var source = new EventSource(panel.dataset.runEvents);
    source.addEventListener("progress", function (e) { draw(panel, JSON.parse(e.data)); });
    source.addEventListener("done", function (e) {
      draw(panel, JSON.parse(e.data));
      source.close();
      document.body.dispatchEvent(new Event("queue-changed"));
    });
  }

  function init(root) {
    root = root && root.querySelectorAll ? root : document;
    if (root.matches && root.matches("[data-run-events]")) { follow(root); }
    root.querySelectorAll("[data-run-events]").forEach(follow);
  }
  document.addEventListener("DOMContentLoaded", function () {
    init(document);
    if (window.htmx) { window.htmx.onLoad(init); }
  });
})();
