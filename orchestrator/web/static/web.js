// Executioner web view: the run page's live part refreshes itself, without reloading the page.
// It asks /runs/<id>/live with the version it shows; the server answers 304 until something changed.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var url = live.getAttribute("data-live-url");
  var etag = '"' + live.getAttribute("data-version") + '"';
  var busy = false;

  function period() {
    // A running run every second (every 3 s past 500 jobs: a big page costs the server more); a
    // finished one every 5 s (a resume may start from the CLI or another browser).
    var running = Number(live.getAttribute("data-period")) || 1000;
    return live.getAttribute("data-running") === "1" ? running : 5000;
  }

  function tick() {
    if (busy || document.hidden) { schedule(); return; }
    busy = true;
    fetch(url, { headers: { "If-None-Match": etag }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 200) {
          etag = response.headers.get("ETag") || etag;
          return response.text().then(function (html) {
            live.innerHTML = html;
            var badge = document.getElementById("run-status");
            live.setAttribute("data-running", badge && badge.textContent.trim() === "RUNNING" ? "1" : "0");
          });
        }
      })
      .catch(function () { /* the server restarts, the network blinks: try again next tick */ })
      .then(function () { busy = false; schedule(); });
  }

  function schedule() { window.setTimeout(tick, period()); }
  schedule();
}());
