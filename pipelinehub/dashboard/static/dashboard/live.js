/* PipelineHub's live pages: an environment's board and one flow run's page.
 *
 * The server renders each page complete, with the change-stream cursor its rows are consistent
 * with (data-cursor). This script opens the environment's websocket with ?after=<cursor>, so it
 * receives exactly the changes made since, then every change as it happens (the frames are in
 * pipelinehub/live/protocol.py). It reconnects with backoff and resumes from its last cursor,
 * closes the socket while the tab is hidden and catches up when it is shown again, and says
 * which of these it is doing in the connection indicator.
 *
 * The Content Security Policy allows no inline code: the page hands over everything through
 * data-* attributes, a <template> row rendered by the server, and one json_script (the icons).
 * Times and durations are written as pipelinehub/dashboard/presentation.py writes them.
 *
 * Detector flags (runaway, stuck, late) travel on the same changes, as the run's `flag`: they
 * show in the run's row, on the run page, and in the board's "Needs attention" list.
 */
(function () {
  "use strict";

  const root = document.getElementById("live");
  if (!root || !("WebSocket" in window)) return;

  const PING_EVERY = 20000; // ms between pings; a silent socket is dead after PONG_TIMEOUT
  const PONG_TIMEOUT = 10000;
  const STALE_AFTER = 10000; // ms without a connection before the page says it is stale
  const MAX_BACKOFF = 15000;
  const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED", "CRASHED"]);
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const CLOSED_FOR_GOOD = {
    4403: "Not allowed: your session ended or your role changed. Reload the page.",
    4404: "This environment no longer exists.",
  };

  const icons = JSON.parse(document.getElementById("state-icons").textContent);
  const mode = root.dataset.live; // "board" or "run"
  const runId = root.dataset.runId || "";
  const placeholder = root.dataset.placeholder;
  const maxRows = Number(root.dataset.maxRows || 200);
  const filter = {
    states: new Set((root.dataset.filterStates || "").split(",").filter(Boolean)),
    flow: root.dataset.filterFlow || "",
    search: (root.dataset.filterQ || "").toLowerCase(),
  };
  const filtered = filter.states.size > 0 || filter.flow !== "" || filter.search !== "";
  const rows = root.querySelector("[data-rows]");
  const template = root.querySelector("template[data-row-template]");
  const summary = root.querySelector("[data-run-summary]");
  const indicator = document.querySelector("[data-connection]");
  const attention = root.querySelector("[data-flagged]");

  let cursor = root.dataset.cursor || "";
  let socket = null;
  let attempts = 0;
  let lostAt = null; // when the page stopped being live (ms), null while it is
  let retryTimer = null;
  let staleTimer = null;
  let pingTimer = null;
  let pongTimer = null;
  let stopped = false;

  /* Formatting, as presentation.py does it */

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function formatTime(micros) {
    if (!micros) return "—";
    const d = new Date(Math.floor(micros / 1000));
    return `${MONTHS[d.getUTCMonth()]} ${pad(d.getUTCDate())}, ` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  }

  function isoTime(micros) {
    return micros ? new Date(Math.floor(micros / 1000)).toISOString().replace(/\.\d+Z$/, "Z") : "";
  }

  function durationOf(run, nowMicros) {
    if (!run.start) return null;
    if (run.end) return Math.max(run.end - run.start, 0);
    if (TERMINAL.has(run.state_type)) return null;
    return Math.max(nowMicros - run.start, 0);
  }

  function formatDuration(micros) {
    if (micros === null) return "—";
    const seconds = Math.floor(micros / 1e6);
    if (seconds < 10) {
      const tenths = Math.floor(micros / 1e5);
      return `${Math.floor(tenths / 10)}.${tenths % 10}s`;
    }
    if (seconds < 60) return `${seconds}s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${pad(seconds % 60)}s`;
    return `${Math.floor(seconds / 3600)}h ${pad(Math.floor((seconds % 3600) / 60))}m`;
  }

  function stateLabel(type) {
    return type.charAt(0) + type.slice(1).toLowerCase();
  }

  /* Showing a run: the same elements the server renders, found by data-field */

  function fields(element, name) {
    return element.querySelectorAll(`[data-field="${name}"]`);
  }

  function fill(element, run) {
    const nowMicros = Date.now() * 1000;
    Object.assign(element.dataset, {
      version: run.version,
      stateType: run.state_type,
      start: run.start || "",
      end: run.end || "",
    });
    fields(element, "name").forEach((el) => { el.textContent = run.name || run.id; });
    fields(element, "flow").forEach((el) => { el.textContent = run.flow || "—"; });
    fields(element, "deployment").forEach((el) => {
      el.textContent = run.deployment ? run.deployment.slice(0, 8) : "—";
      el.title = run.deployment || "";
    });
    fields(element, "state").forEach((el) => {
      el.className = `state state-${run.state_type.toLowerCase()}`;
      el.querySelector(".state-icon").textContent = icons[run.state_type] || "•";
      el.querySelector(".state-name").textContent = run.state_name || stateLabel(run.state_type);
    });
    for (const name of ["start", "end"]) {
      fields(element, name).forEach((el) => {
        el.textContent = formatTime(run[name]);
        el.dateTime = isoTime(run[name]);
      });
    }
    fields(element, "duration").forEach((el) => {
      el.textContent = formatDuration(durationOf(run, nowMicros));
    });
    fields(element, "run_count").forEach((el) => { el.textContent = run.run_count; });
    fields(element, "flag").forEach((el) => showFlag(el, run.flag));
    const finished = TERMINAL.has(run.state_type);
    element.querySelectorAll("[data-action]").forEach((el) => {
      el.hidden = (el.dataset.action === "retry") !== finished;
      if (el.hidden) el.open = false;
    });
  }

  function flagKind(flag) {
    return flag.kind.charAt(0).toUpperCase() + flag.kind.slice(1);
  }

  function showFlag(el, flag) {
    el.hidden = !flag;
    el.className = `flag flag-${flag ? flag.kind : "none"}`;
    el.querySelector(".flag-kind").textContent = flag ? flagKind(flag) : "";
    el.querySelector(".flag-reason").textContent = flag ? flag.reason : "";
  }

  /* The board's "Needs attention" list: every flagged run the page hears of */

  function make(tag, className, text) {
    const made = document.createElement(tag);
    if (className) made.className = className;
    if (text) made.textContent = text;
    return made;
  }

  function flagged(id, run) {
    if (!attention) return;
    const list = attention.querySelector("[data-flagged-list]");
    const counter = attention.querySelector("[data-flagged-count]");
    let count = Number(counter.textContent); // of them all: the list may show fewer
    let item = list.querySelector(`li[data-run-id="${CSS.escape(id)}"]`);
    if (!run || !run.flag) {
      if (item) {
        item.remove();
        count -= 1;
      }
    } else {
      if (!item) {
        count += 1;
        item = document.createElement("li");
        item.dataset.runId = id;
        const link = document.createElement("a");
        link.href = attention.dataset.runUrl.replace(placeholder, id);
        const flow = make("span", "muted");
        const flag = make("span");
        flag.dataset.field = "flag";
        const icon = make("span", "flag-icon", "⚑");
        icon.setAttribute("aria-hidden", "true");
        flag.append(icon, " ", make("span", "flag-kind"), ": ", make("span", "flag-reason"));
        item.append(link, " ", flow, " ", flag);
        list.append(item);
      }
      item.querySelector("a").textContent = run.name || id;
      item.querySelector(".muted").textContent = run.flow || "";
      showFlag(item.querySelector("[data-field=flag]"), run.flag);
    }
    count = Math.max(count, list.children.length);
    attention.hidden = count === 0;
    counter.textContent = count;
  }

  function runOf(element) {
    const d = element.dataset;
    return {
      state_type: d.stateType,
      start: Number(d.start) || null,
      end: Number(d.end) || null,
    };
  }

  function tickDurations() {
    const nowMicros = Date.now() * 1000;
    root.querySelectorAll("[data-state-type]").forEach((element) => {
      const run = runOf(element);
      if (run.start && !run.end && !TERMINAL.has(run.state_type)) {
        fields(element, "duration").forEach((el) => {
          if (el.closest("[data-state-type]") === element) {
            el.textContent = formatDuration(durationOf(run, nowMicros));
          }
        });
      }
    });
  }

  /* Rows: kept in the server's order (board: newest change first; run page: oldest start
     first), at most maxRows */

  function rowOf(id) {
    return rows.querySelector(`tr[data-run-id="${CSS.escape(id)}"]`);
  }

  function adopt(element, id) {
    element.dataset.runId = id;
    element.querySelectorAll("[href], [action]").forEach((el) => {
      for (const attribute of ["href", "action"]) {
        const value = el.getAttribute(attribute);
        if (value) el.setAttribute(attribute, value.replace(placeholder, id));
      }
    });
  }

  function newRow(run) {
    const row = template.content.firstElementChild.cloneNode(true);
    adopt(row, run.id);
    return row;
  }

  function sortKey(row) {
    const d = row.dataset;
    return mode === "board" ? -Number(d.version) : (Number(d.start) || Number(d.version));
  }

  function place(row) {
    const key = sortKey(row);
    let before = null;
    for (const other of rows.children) {
      if (other !== row && sortKey(other) > key) {
        before = other;
        break;
      }
    }
    if (row.parentNode === rows && row.nextElementSibling === before) return;
    const focused = row.contains(document.activeElement) ? document.activeElement : null;
    rows.insertBefore(row, before);
    if (focused) focused.focus();
  }

  function upsert(run, quietly) {
    let row = rowOf(run.id);
    if (row && Number(row.dataset.version) > run.version) return; // an older state
    const added = !row;
    if (added) row = newRow(run);
    fill(row, run);
    place(row);
    if (!quietly) flash(row, added);
    while (rows.children.length > maxRows) rows.lastElementChild.remove();
  }

  function remove(id) {
    const row = rowOf(id);
    if (row) row.remove();
  }

  function flash(row, added) {
    row.classList.remove("changed", "added");
    void row.offsetWidth; // restart the animation
    row.classList.add(added ? "added" : "changed");
  }

  function counted() {
    const count = rows.children.length;
    root.querySelectorAll("[data-row-count]").forEach((el) => { el.textContent = count; });
    const empty = root.querySelector("[data-empty]");
    if (empty) empty.hidden = count > 0;
  }

  function shows(run) {
    return (filter.states.size === 0 || filter.states.has(run.state_type)) &&
      (!filter.flow || run.flow === filter.flow) &&
      (!filter.search || (run.name || "").toLowerCase().includes(filter.search));
  }

  /* Frames */

  function applyChange(change) {
    if (mode === "board") {
      if (change.kind !== "flow") return;
      flagged(change.id, change.run);
      // The socket is not filtered: a run that stops matching must leave the board.
      if (change.run && shows(change.run)) upsert(change.run);
      else remove(change.id);
    } else if (change.id === runId) {
      if (change.run) fill(summary, change.run);
      root.querySelector("[data-removed]").hidden = change.run !== null;
    } else if (change.run) {
      upsert(change.run);
    } else {
      remove(change.id);
    }
  }

  function applySnapshot(runs) {
    if (mode === "board" && filtered && root.dataset.cursor) {
      // A resync: the snapshot holds the newest runs, not the newest that match, which the
      // server renders. (A page rendered without a cursor, Redis being unavailable then, makes
      // do with the snapshot rather than reload while Redis is still slow.)
      window.location.reload();
      return;
    }
    rows.replaceChildren();
    if (mode === "run") {
      const flowRun = runs.find((run) => run.id === runId);
      if (flowRun) fill(summary, flowRun);
      root.querySelector("[data-removed]").hidden = Boolean(flowRun);
    }
    runs
      .filter((run) => run.id !== runId && (mode === "run" || shows(run)))
      .forEach((run) => upsert(run, true));
  }

  function receive(frame) {
    clearTimeout(pongTimer);
    switch (frame.type) {
      case "snapshot":
        applySnapshot(frame.rows);
        break;
      case "replay":
      case "delta":
        frame.changes.forEach(applyChange);
        break;
      case "error":
        console.warn("PipelineHub live:", frame.message);
        break;
      default:
        break; // resync (a snapshot follows), pong
    }
    if (frame.cursor && frame.type !== "pong") cursor = frame.cursor;
    if (frame.type === "snapshot" || frame.type === "replay") becameLive();
    counted();
  }

  /* The connection */

  function show(state, text) {
    if (!indicator) return;
    const labels = {
      connecting: ["◌", "Connecting…"],
      live: ["●", "Live"],
      reconnecting: ["↻", "Reconnecting…"],
      stale: ["⚠", `Stale: no updates since ${formatTime(lostAt * 1000)} UTC. Reconnecting…`],
      paused: ["⏸", "Paused while this tab is hidden"],
      closed: ["✕", text],
    };
    const [icon, label] = labels[state];
    indicator.dataset.state = state;
    indicator.querySelector(".connection-icon").textContent = icon;
    indicator.querySelector(".connection-label").textContent = label;
  }

  function url() {
    const params = new URLSearchParams();
    if (runId) params.set("run", runId);
    if (cursor) params.set("after", cursor);
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}${root.dataset.wsPath}?${params}`;
  }

  function connect() {
    clearTimeout(retryTimer);
    if (socket || stopped || document.hidden) return;
    const ws = new WebSocket(url());
    socket = ws;
    if (!lostAt) show("connecting");
    ws.onmessage = (event) => {
      if (ws === socket) receive(JSON.parse(event.data));
    };
    ws.onclose = (event) => {
      if (ws === socket) lost(event.code);
    };
  }

  function becameLive() {
    attempts = 0;
    lostAt = null;
    clearTimeout(staleTimer);
    clearInterval(pingTimer);
    pingTimer = setInterval(ping, PING_EVERY);
    show("live");
  }

  function ping() {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify({ type: "ping" }));
    clearTimeout(pongTimer);
    pongTimer = setTimeout(() => lost(0), PONG_TIMEOUT); // a half-open socket closes slowly
  }

  function drop() {
    const ws = socket;
    socket = null;
    clearInterval(pingTimer);
    clearTimeout(pongTimer);
    if (ws) ws.close();
  }

  function lost(code) {
    drop();
    if (CLOSED_FOR_GOOD[code]) {
      stopped = true;
      clearTimeout(staleTimer); // "stale" would hide why the page stopped
      show("closed", CLOSED_FOR_GOOD[code]);
      return;
    }
    if (lostAt === null) {
      lostAt = Date.now();
      staleTimer = setTimeout(() => show("stale"), STALE_AFTER);
    }
    if (Date.now() - lostAt < STALE_AFTER) show("reconnecting");
    const backoff = Math.min(MAX_BACKOFF, 500 * 2 ** attempts);
    attempts += 1;
    retryTimer = setTimeout(connect, backoff / 2 + Math.random() * backoff / 2);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(retryTimer);
      clearTimeout(staleTimer);
      lostAt = null;
      drop();
      if (!stopped) show("paused");
    } else {
      attempts = 0;
      connect(); // resumes after the cursor: the replay is the catch-up
    }
  });

  if (summary) adopt(summary, runId);
  setInterval(tickDurations, 1000);
  connect();
})();
