// License import: poll the job's progress and reload the page when the check or the import ends.
// Served from our own static files; no inline script, no external assets.
(function () {
  "use strict";

  var PHASES = {
    queued: "Waiting to start", reading: "Reading", checking: "Checking", matching: "Matching against the licenses on record",
    applying: "Importing", previewed: "Checked", done: "Imported", failed: "Stopped", cancelled: "Cancelled"
  };

  function start(root) {
    var phase = root.querySelector("[data-import=phase]");
    var count = root.querySelector("[data-import=count]");
    var bar = root.querySelector("[data-import=bar]");
    var note = root.querySelector("[data-import=note]");

    function show(status) {
      phase.textContent = PHASES[status.phase] || status.phase;
      count.textContent = status.total ? status.done.toLocaleString() + " of " + status.total.toLocaleString() + " rows" : "";
      if (status.percent === null) {
        bar.removeAttribute("value");  // indeterminate: a step without row counts
      } else {
        bar.value = status.percent;
      }
      note.textContent = status.note || "";
      note.hidden = !status.note;  // no job worker has taken the step for a while
    }

    function poll() {
      fetch(root.dataset.source, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (status) {
          show(status);
          if (status.finished) {
            window.location.reload();
          } else {
            window.setTimeout(poll, 700);
          }
        })
        .catch(function () { window.setTimeout(poll, 2000); });
    }

    poll();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("import-progress");
    if (root) start(root);
  });
})();
