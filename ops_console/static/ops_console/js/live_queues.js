// Live queues: numbers pushed over a websocket as they change, the JSON feed polled every few
// seconds only while the socket is down or silent (no heartbeat for 30 s). Served from our own
// static files; no inline script, no external assets.
(function () {
  "use strict";

  function formatWait(seconds) {
    if (seconds >= 3600) return Math.floor(seconds / 3600) + "h " + String(Math.floor((seconds % 3600) / 60)).padStart(2, "0") + "m";
    if (seconds >= 60) return Math.floor(seconds / 60) + "m " + String(seconds % 60).padStart(2, "0") + "s";
    return seconds + " s";
  }

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function renderStates(tbody, states) {
    var rows = document.createDocumentFragment();
    states.forEach(function (row) {
      var tr = document.createElement("tr");
      tr.dataset.state = row.state;
      [row.state, row.waiting, formatWait(row.longest_wait_s), row.available, row.offers].forEach(function (v) {
        tr.appendChild(cell(String(v)));
      });
      rows.appendChild(tr);
    });
    if (!states.length) {
      var tr = document.createElement("tr");
      var td = cell("Nobody waiting and no provider available.");
      td.colSpan = 5;
      tr.appendChild(td);
      rows.appendChild(tr);
    }
    tbody.replaceChildren(rows);
  }

  function renderSla(tbody, sla) {
    var rows = document.createDocumentFragment();
    sla.forEach(function (row) {
      var tr = document.createElement("tr");
      tr.dataset.priority = row.priority;
      [row.priority, row.target_s + " s", row.left, row.within,
       row.attainment_pct === null ? "—" : row.attainment_pct + " %"].forEach(function (v) {
        tr.appendChild(cell(String(v)));
      });
      rows.appendChild(tr);
    });
    tbody.replaceChildren(rows);
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleTimeString() : "—";
  }

  function renderRouters(tbody, routers) {
    var rows = document.createDocumentFragment();
    routers.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.dataset.router = r.name;
      [r.name, r.role, r.epoch === null ? "—" : r.epoch, when(r.leader_since), when(r.last_decision_at),
       r.events_pending, r.events_lag_s === null ? "—" : r.events_lag_s + " s", r.rebuilds,
       r.seen_ago_s + " s ago", r.last_error || "—"].forEach(function (v) {
        tr.appendChild(cell(String(v)));
      });
      rows.appendChild(tr);
    });
    if (!routers.length) {
      var tr = document.createElement("tr");
      var td = cell("No router has reported yet: start manage.py run_router.");
      td.colSpan = 10;
      tr.appendChild(td);
      rows.appendChild(tr);
    }
    tbody.replaceChildren(rows);
  }

  function start(root) {
    var url = root.dataset.source;
    var every = (parseInt(root.dataset.refreshSeconds, 10) || 3) * 1000;
    var field = function (name) { return root.querySelector('[data-live="' + name + '"]'); };

    function apply(data) {
      field("at").textContent = new Date(data.at).toLocaleTimeString();
      field("total-waiting").textContent = data.totals.waiting;
      field("total-available").textContent = data.totals.available;
      field("total-offers").textContent = data.totals.offers;
      field("median").textContent = data.median_wait_s === null ? "—" : data.median_wait_s;
      field("p90").textContent = data.p90_wait_s === null ? "—" : data.p90_wait_s;
      ["left", "accepted", "cancelled", "expired"].forEach(function (name) {
        field(name).textContent = data[name];
      });
      renderStates(field("states"), data.states);
      renderSla(field("sla"), data.sla);
      renderRouters(field("routers"), data.routers);
      field("standby").textContent = data.standby_present ? "present" : "none: a failed leader has no one to take over";
      field("error").textContent = "";
    }

    var silentAfter = (parseInt(root.dataset.silentSeconds, 10) || 30) * 1000;
    var lastHeard = 0;      // when the socket last said anything (numbers or heartbeat)
    var socket = null;
    var retry = 1000;       // reconnect backoff, up to 30 s
    var status = field("mode");

    function pushing() {
      return socket !== null && socket.readyState === WebSocket.OPEN && Date.now() - lastHeard < silentAfter;
    }

    function showMode() {
      if (status) status.textContent = pushing() ? "live (push)" : "refreshes every " + every / 1000 + " s";
      root.dataset.mode = pushing() ? "push" : "poll";
    }

    function connect() {
      if (!root.dataset.socket || !window.WebSocket) return;
      var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      socket = new WebSocket(scheme + window.location.host + root.dataset.socket);
      socket.onmessage = function (message) {
        var data;
        try { data = JSON.parse(message.data); } catch (e) { return; }
        lastHeard = Date.now();
        retry = 1000;
        if (data.type === "queues") apply(data.data);
        showMode();
      };
      socket.onclose = function () {
        socket = null;
        showMode();
        window.setTimeout(connect, retry);
        retry = Math.min(retry * 2, 30000);
      };
    }

    function poll() {
      if (pushing()) {
        showMode();
        window.setTimeout(poll, every);
        return;
      }
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(apply)
        .catch(function (error) { field("error").textContent = "(refresh failed: " + error.message + ")"; })
        .finally(function () { showMode(); window.setTimeout(poll, every); });
    }
    connect();
    window.setTimeout(poll, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("live-queues");
    if (root) start(root);
  });
})();
