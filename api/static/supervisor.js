// Supervisor dashboard: queues with waiting calls, call takers, service level, abandoned calls to call
// back, open incidents per agency, component health. Every live event schedules one REST refresh.
"use strict";

(() => {
  const { t, label, api, el, seconds, clock, toast } = IZS;
  const $ = (id) => document.getElementById(id);
  const DESKS = ["112", "HZS", "ZZS", "PCR"];
  let refreshTimer = null;
  let queued = [];

  function tile(label, value, cls = "") {
    return el("div", { class: `tile ${cls}` }, el("div", { class: "muted" }, label), el("div", { class: "value" }, value));
  }

  async function refreshSummary() {
    const s = await api("GET", "/api/reports/summary");
    const sl = s.service_level;
    const pct = sl.service_level_percent;
    const waiting = Object.values(s.waiting_now).reduce((a, b) => a + b, 0);
    $("tiles").replaceChildren(
      tile(t("service_level"), pct === null ? t("none") : `${pct} %`, pct === null ? "" : pct >= 90 ? "good" : "bad"),
      tile(t("offered"), sl.offered),
      tile(t("answered"), sl.answered),
      tile(t("avg_wait"), sl.average_wait_s === null ? t("none") : `${sl.average_wait_s} s`),
      tile(t("waiting_now"), waiting, waiting ? "bad" : "good"),
      tile(t("abandoned"), s.abandoned_to_call_back, s.abandoned_to_call_back ? "bad" : "good"),
    );
    $("per-agency").replaceChildren(
      ...Object.entries(s.open_incidents_by_agency).map(([agency, n]) => el("span", { class: "agency-chip" }, `${label("agency", agency)}: ${n}`)),
    );
  }

  async function refreshQueues() {
    const queues = await api("GET", "/api/queues");
    queued = [];
    const rows = [];
    for (const desk of DESKS) {
      for (const entry of queues.desks[desk] || []) {
        queued.push(entry);
        const prio = el("select", { "aria-label": t("reprioritise"), onchange: (ev) => reprioritise(desk, entry.call_id, Number(ev.target.value)) },
          ...[1, 2, 3].map((p) => el("option", { value: p, selected: p === entry.priority }, `P${p}`)));
        const move = el("select", { "aria-label": t("move"), onchange: (ev) => ev.target.value && moveCall(desk, entry.call_id, ev.target.value) },
          el("option", { value: "" }, `${t("move")}…`), ...DESKS.filter((d) => d !== desk).map((d) => el("option", { value: d }, label("desk", d))));
        rows.push(el("tr", { "data-call": entry.call_id },
          el("td", {}, label("desk", desk)),
          el("td", {}, el("span", { class: `prio prio-${entry.priority}` }, `P${entry.priority}`), entry.front ? " ♥" : ""),
          el("td", { class: "wait", "data-arrival": entry.arrival || "" }, clock(Math.round(entry.wait_s || 0))),
          el("td", {}, entry.caller || ""),
          el("td", { class: "muted" }, (entry.first_words || "").slice(0, 80)),
          el("td", {}, prio, " ", move),
        ));
      }
    }
    $("queues").replaceChildren(...rows);
  }

  async function reprioritise(desk, callId, priority) {
    try { await api("POST", `/api/queues/${encodeURIComponent(desk)}/${callId}/priority`, { priority, front: false }); }
    catch (e) { toast(e.message); }
    schedule();
  }

  async function moveCall(desk, callId, toDesk) {
    try { await api("POST", `/api/queues/${encodeURIComponent(desk)}/${callId}/move`, { to_desk: toDesk, reason: "supervisor" }); }
    catch (e) { toast(e.message); }
    schedule();
  }

  async function refreshTakers() {
    const takers = await api("GET", "/api/takers");
    $("takers").replaceChildren(...takers.map((x) => el("tr", {},
      el("td", {}, x.name),
      el("td", {}, x.desks.map((d) => label("desk", d)).join(", ")),
      el("td", {}, el("span", { class: `state-badge state-${x.state}`, "data-state": x.state }, label("taker_state", x.state))),
      el("td", { class: "since", "data-since": x.since || "" }, x.since ? clock(seconds(x.since)) : ""),
    )));
  }

  async function refreshIncidents() {
    const page = await api("GET", "/api/incidents?status=open&limit=50");
    $("incidents").replaceChildren(...page.items.map((i) => el("tr", { "data-incident": i.id },
      el("td", {}, el("strong", {}, i.id)),
      el("td", {}, el("span", { class: `prio prio-${i.priority}` }, `P${i.priority}`)),
      el("td", { "data-type": i.incident_type }, label("type", i.incident_type)),
      el("td", {}, ...i.agencies.map((a) => el("span", { class: "agency-chip", "data-code": a.agency }, label("agency", a.agency)))),
      el("td", { class: "muted" }, (i.location && i.location.text) || ""),
      el("td", { class: "muted" }, i.confirmed_by || ""),
    )));
  }

  async function refreshAbandoned() {
    const page = await api("GET", "/api/reports/abandoned?limit=50");
    $("abandoned").replaceChildren(...page.items.map((c) => el("tr", {},
      el("td", {}, el("strong", {}, c.caller.display)),
      el("td", {}, c.dialled),
      el("td", { class: "muted" }, new Date(c.offered_at).toLocaleTimeString()),
      el("td", {}, el("button", { type: "button", onclick: () => calledBack(c.id) }, t("called_back"))),
    )));
  }

  async function calledBack(callId) {
    await api("POST", `/api/calls/${callId}/callback`, {}, { "Idempotency-Key": `callback-${callId}` });
    schedule();
  }

  async function refreshHealth() {
    const components = await api("GET", "/api/health");
    IZS.healthBanner(components);
    // Transcription per node: legs transcribed, backlog, audio dropped in 10 min, legs waiting for a decoding
    // slot, model; red when dropping or a caller's leg waits for the recognizer.
    const detail = (c) => {
      const d = c.data || {};
      if (d.status === undefined) return c.detail || "";
      return `${d.status} · ${t("legs")} ${d.legs} · ${t("backlog")} ${d.backlog_s} s · ${t("dropped")} ${d.dropped_s} s · ${t("asr_waiting")} ${d.legs_waiting_for_slot ?? 0} · ${t("model")} ${(d.models || []).join(", ")}`
        + (d.last_failure ? ` · ${d.last_failure}` : "");
    };
    const name = (c) => { const [base, node] = c.component.split("@"); return label("component", base) + (node ? ` (${t("node")} ${node})` : ""); };
    $("components").replaceChildren(...components.map((c) => el("tr", { "data-component": c.component, "data-healthy": String(c.healthy) },
      el("td", {}, name(c)),
      el("td", {}, el("span", { class: `state-badge ${c.healthy ? "state-available" : "state-busy"}` }, c.healthy ? "OK" : "!!")),
      el("td", { class: "muted" }, detail(c)),
    )));
  }

  async function refreshAll() {
    refreshTimer = null;
    await Promise.allSettled([refreshSummary(), refreshQueues(), refreshTakers(), refreshIncidents(), refreshAbandoned(), refreshHealth()]);
    document.body.dataset.refreshed = String(Date.now());
  }

  function schedule() {
    if (refreshTimer === null) refreshTimer = setTimeout(refreshAll, 250);
  }

  function tick() {
    document.querySelectorAll("td.wait[data-arrival]").forEach((td) => { if (td.dataset.arrival) td.textContent = clock(seconds(td.dataset.arrival)); });
    document.querySelectorAll("td.since[data-since]").forEach((td) => { if (td.dataset.since) td.textContent = clock(seconds(td.dataset.since)); });
  }

  IZS.boot(async () => {
    document.addEventListener("izs:language", schedule);
    document.addEventListener("keydown", (ev) => { if (ev.altKey && ev.key.toLowerCase() === "l") $("lang").click(); });
    setInterval(tick, 1000);
    setInterval(schedule, 10000);  // service level drifts with time even without events
    IZS.live(() => schedule(), () => refreshAll());
  });
})();
