// Call-taker console: the offered call, live transcript with triage evidence highlighted, the triage
// suggestion to accept or change, the incident form, and the telephone-CPR banner with its timers.
"use strict";

(() => {
  const { t, label, api, el, seconds, clock, toast } = IZS;
  const NOT_YET_HEARD = "UNKNOWN";
  const TYPES = [
    "MED_CARDIAC_ARREST", "MED_BREATHING", "MED_CHEST_PAIN", "MED_STROKE", "MED_TRAUMA", "MED_UNCONSCIOUS",
    "MED_SEIZURE", "MED_CHILDBIRTH", "MED_POISONING", "MED_ALLERGY", "MED_PSYCHIATRIC", "MED_OTHER",
    "FIRE_BUILDING", "FIRE_VEHICLE", "FIRE_WILDLAND", "FIRE_OTHER", "TRAFFIC_ACCIDENT", "TECH_RESCUE",
    "HAZMAT_GAS", "HAZMAT_CHEMICAL", "WEATHER_FLOOD", "POLICE_BURGLARY", "POLICE_ASSAULT",
    "POLICE_DOMESTIC_VIOLENCE", "POLICE_THEFT", "POLICE_WEAPON", "POLICE_MISSING_PERSON", "POLICE_TRAFFIC",
    "POLICE_PUBLIC_ORDER", "POLICE_OTHER", "NON_EMERGENCY", "SILENT_OR_HOAX",
  ];
  // Shown by name in the console's language (IZS.label); "UNKNOWN" (nothing heard yet) is a state of the
  // call, never a type a person picks, so it is not in the list.
  const typeLabel = (code) => IZS.label("type", code);
  const state = {
    me: null, offered: null, call: null, incident: null, triage: null,
    finals: [], partial: "", duplicate: null, recognisedPosted: new Set(), compressionAt: null, recognisedAt: null,
    replayUrl: null, restoring: false, dirty: new Set(), draftTimer: null,
  };
  const $ = (id) => document.getElementById(id);

  function fillTypes() {
    const select = $("f-type");
    const current = select.value;
    // Starts empty: an untouched form must not save a cardiac arrest (nor anything else).
    select.replaceChildren(el("option", { value: "" }, t("choose_type")), ...TYPES.map((v) => el("option", { value: v }, typeLabel(v))));
    select.value = current || "";
    document.querySelectorAll("[data-agency]").forEach((node) => { node.textContent = label("agency", node.dataset.agency); });
  }

  function renderSteps() {
    $("tcpr-steps").replaceChildren(...t("tcpr_steps").map((s) => el("li", {}, s)));
  }

  // ------------------------------------------------------------------------------ offered call
  function showOffer(call) {
    state.offered = call;
    $("offer-empty").classList.toggle("hidden", !!call);
    $("offer-body").classList.toggle("hidden", !call);
    $("offer").classList.toggle("ringing", !!call);
    if (!call) return;
    $("offer-caller").textContent = call.caller.display;
    $("offer-language").textContent = call.language || "?";
    $("offer-desk").textContent = call.desk ? label("desk", call.desk) : "?";
    $("offer-location").textContent = (call.location && call.location.text) || t("none");
    drawMap(call.location);
    $("offer-priority").replaceChildren(call.priority ? el("span", { class: `prio prio-${call.priority}` }, `P${call.priority}`) : "");
    $("btn-accept").focus();
  }

  async function accept() {
    const call = state.offered;
    if (!call) return;
    try {
      const accepted = await api("POST", `/api/calls/${call.id}/accept`, {}, { "Idempotency-Key": `accept-${call.id}` });
      showOffer(null);
      openCall(accepted);
      refreshState();
    } catch (e) {
      toast(e.message);
      showOffer(null);
      refreshQueue();
    }
  }

  // -------------------------------------------------------------------------------- offline map
  // The region's places come from the API (no tile server): an equirectangular plot of Karlovarský kraj
  // with the caller's position and its accuracy circle.
  const MAP = { west: 12.05, east: 13.35, south: 49.88, north: 50.48, w: 400, h: 260 };
  let places = [];
  function project(lat, lon) {
    return [
      ((lon - MAP.west) / (MAP.east - MAP.west)) * MAP.w,
      ((MAP.north - lat) / (MAP.north - MAP.south)) * MAP.h,
    ];
  }
  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    return node;
  }
  async function loadPlaces() {
    try { places = await api("GET", "/api/places"); } catch (e) { places = []; }
    drawMap(null);
  }
  function drawMap(location) {
    const map = $("map");
    if (!map) return;
    map.replaceChildren();
    places.forEach((p) => {
      const [x, y] = project(p.lat, p.lon);
      map.appendChild(svg("circle", { cx: x, cy: y, r: p.part ? 1.2 : 2, fill: "#6b8797" }));
      if (!p.part) {
        const label = svg("text", { x: x + 3, y: y - 2, fill: "#8fa9b8", "font-size": 7 });
        label.textContent = p.municipality;
        map.appendChild(label);
      }
    });
    const text = [];
    if (location && location.lat != null && location.lon != null) {
      const [x, y] = project(location.lat, location.lon);
      const pxPerMetre = MAP.h / ((MAP.north - MAP.south) * 111320);
      if (location.radius_m) {
        map.appendChild(svg("circle", {
          id: "map-accuracy", cx: x, cy: y, r: Math.max(3, location.radius_m * pxPerMetre),
          fill: "rgba(255,80,80,.2)", stroke: "#ff5050",
        }));
      }
      map.appendChild(svg("circle", { id: "map-position", cx: x, cy: y, r: 3.5, fill: "#ff5050" }));
    }
    if (location) {
      text.push(location.text || "");
      text.push(`${t("source")}: ${location.source}`);
      if (location.radius_m) text.push(`± ${Math.round(location.radius_m)} m`);
    }
    $("map-text").textContent = text.filter(Boolean).join(" · ") || t("none");
  }

  // ------------------------------------------------------------------------------- current call
  function openCall(call, partial = "", serverDraft = null) {
    const same = state.call && state.call.id === call.id;
    if (!same) {
      state.dirty = new Set();
      state.incident = null;
      $("incident-id").textContent = "";
      $("incident-form").reset();
      fillTypes();
    }
    state.call = call;
    const finals = (call.transcript || []).filter((s) => s.leg === "caller").map((s) => s.text);
    // A snapshot older than the live events already shown (accept's answer racing a restore) never
    // takes words off the screen.
    if (!same || finals.length >= state.finals.length) state.finals = finals;
    if (!same || partial) state.partial = partial || "";
    if (!same) { state.compressionAt = null; state.recognisedAt = null; }
    $("call-head").textContent = `${call.caller.display} · ${call.dialled} · ${call.desk ? label("desk", call.desk) : ""}`;
    drawMap(call.location);
    if (call.triage) showTriage(call.triage);
    renderTranscript();
    if (call.incident_id) loadIncident(call.incident_id);
    restoreDraft(call.id, serverDraft);
    $("btn-save").disabled = false;
    showRecording(call);
  }

  // ------------------------------------------------------------------------- restore on load
  // The server keeps everything the console shows; a reload, a crashed browser or another PC gets it all
  // back from GET /api/me/work: the call in hand, the offer, the taker's state.
  async function restore() {
    if (!state.me.taker_id) return;
    state.restoring = true;
    try {
      const work = await api("GET", "/api/me/work");
      showMyState(work.state);
      if (work.call && (!state.call || state.call.id !== work.call.id || state.call.state !== work.call.state)) {
        showOffer(null);
        openCall(work.call, work.partial, work.draft);
      } else if (work.call && state.call && state.call.id === work.call.id && work.partial) {
        state.partial = work.partial; renderTranscript();
      }
      if (work.offer && (!state.offered || state.offered.id !== work.offer.id)) showOffer(work.offer);
      if (!work.offer && state.offered && !work.call) showOffer(null);
      document.body.dataset.restored = String(Date.now());
    } catch (e) {
      toast(e.message);
    } finally {
      state.restoring = false;
    }
  }

  // What was typed but not saved yet survives a reload of this browser (the saved part is on the server).
  function draftKey(callId) { return `izs.draft.${state.me.taker_id}.${callId}`; }
  function saveDraft(ev) {
    // Only people fire input events here (the console sets values without events).
    if (ev && ev.target && ev.target.name) state.dirty.add(ev.target.name);
    if (!state.call || state.restoring) return;
    const form = $("incident-form");
    const values = {};
    for (const name of ["incident_type", "priority", "municipality", "street", "house_number", "landmark", "note"]) values[name] = form.elements[name].value;
    values.agencies = [...form.querySelectorAll("input[name=agency]:checked")].map((b) => b.value);
    localStorage.setItem(draftKey(state.call.id), JSON.stringify(values));
    // ... and on the server, so another PC gets it too (debounced: one request per pause in typing).
    clearTimeout(state.draftTimer);
    const callId = state.call.id;
    state.draftTimer = setTimeout(() => sendDraft(callId, values), 400);
  }
  function sendDraft(callId, values) {
    const kept = Object.fromEntries(Object.entries(values).filter(([, v]) => (Array.isArray(v) ? v.length : v)));
    return api("PUT", "/api/me/draft", { call_id: callId, values: kept }).catch(() => {});
  }
  function restoreDraft(callId, serverDraft) {
    const raw = serverDraft ? JSON.stringify(serverDraft) : localStorage.getItem(draftKey(callId));
    if (!raw) return;
    try {
      const values = JSON.parse(raw);
      const form = $("incident-form");
      for (const [name, value] of Object.entries(values)) {
        if (name === "agencies") {
          form.querySelectorAll("input[name=agency]").forEach((b) => { b.checked = value.includes(b.value); });
          state.dirty.add("agency");
        } else if (form.elements[name] && value) {
          form.elements[name].value = value;
          state.dirty.add(name);
        }
      }
    } catch (e) { localStorage.removeItem(draftKey(callId)); }
  }

  // ------------------------------------------------------------------------------- replay
  function showRecording(call) {
    $("recording-panel").classList.remove("hidden");
    const live = call.state === "connected" || call.state === "queued";
    $("btn-replay").classList.toggle("hidden", !live);
    $("btn-recording").classList.toggle("hidden", live);
    $("recording-status").textContent = call.recording ? label("recording", call.recording.status) : "";
  }

  // The caller's last 10 s (while on the line: "what street did they say?"), or the whole call afterwards.
  // Fetched with the token (an <audio src> cannot send it) and played from a blob.
  async function playRecording(lastSeconds) {
    if (!state.call) return;
    const query = lastSeconds ? `legs=caller&last_s=${lastSeconds}` : "legs=both";
    const audio = $("replay-audio");
    try {
      const response = await fetch(`/api/calls/${state.call.id}/recording?${query}`, { headers: { Authorization: `Bearer ${IZS.token}` } });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        $("recording-status").textContent = body.message || response.statusText;
        return;
      }
      const blob = await response.blob();
      if (state.replayUrl) URL.revokeObjectURL(state.replayUrl);
      state.replayUrl = URL.createObjectURL(blob);
      audio.dataset.seconds = response.headers.get("X-Recording-Seconds") || "";
      audio.dataset.kind = lastSeconds ? "replay" : "whole";
      audio.src = state.replayUrl;
      $("recording-status").textContent = label("recording", response.headers.get("X-Recording-Status") || "");
      await audio.play();
    } catch (e) {
      $("recording-status").textContent = e.message;
    }
  }

  function evidenceWords() {
    const words = new Set();
    const d = state.triage;
    if (!d) return words;
    const collect = (scored) => (scored && scored.evidence || []).forEach((e) => { if (!e.negated) e.words.forEach((w) => w && words.add(w.toLowerCase())); });
    collect(d.incident_type); collect(d.tcpr); collect(d.priority);
    (d.agencies || []).forEach(collect);
    if (d.location) (d.location.evidence || []).forEach((e) => e.words.forEach((w) => w && words.add(w.toLowerCase())));
    return words;
  }

  function highlighted(text, words) {
    if (!words.size) return [text];
    const escaped = [...words].sort((a, b) => b.length - a.length).map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    const pattern = new RegExp(`(${escaped.join("|")})`, "giu");
    return text.split(pattern).map((part, i) => (i % 2 === 1 ? el("mark", {}, part) : part));
  }

  function renderTranscript() {
    const words = evidenceWords();
    const nodes = [];
    state.finals.forEach((text) => nodes.push(...highlighted(text, words), " "));
    if (state.partial) nodes.push(el("span", { class: "partial" }, ...highlighted(state.partial, words)));
    $("transcript").replaceChildren(...nodes);
  }

  function showTriage(decision) {
    state.triage = decision;
    const box = $("triage");
    const agencies = (decision.agencies || []).map((a) => el("span", { class: "agency-chip", "data-code": a.value }, label("agency", a.value)));
    const type = decision.incident_type ? decision.incident_type.value : NOT_YET_HEARD;
    const heard = type !== NOT_YET_HEARD;
    $("not-yet-heard").classList.toggle("hidden", heard);
    const prio = decision.priority ? decision.priority.value : 2;
    box.classList.remove("muted");
    box.replaceChildren(...[
      el("div", { class: "row" }, ...agencies, el("span", { class: `prio prio-${prio}` }, `P${prio}`)),
      el("div", { class: "big", id: "triage-type", "data-type": type }, typeLabel(type)),
      decision.unsure ? el("div", { class: "error" }, t("unsure")) : null,
      el("div", { class: "muted" }, `${t("evidence")}: ${[...evidenceWords()].join(", ") || t("none")}`),
    ].filter(Boolean));
    $("btn-confirm").disabled = !state.incident;
    // Triage's proposal fills an untouched form; "nothing heard yet" fills nothing.
    if (!state.incident && heard && !$("incident-form").elements.incident_type.value) {
      prefill({ incident_type: type, priority: prio, agencies: (decision.agencies || []).map((a) => ({ agency: a.value })) });
    }
    if (decision.location) prefill({ location: decision.location });  // fills only empty place fields
    setTcpr(!!(decision.tcpr && decision.tcpr.value));
    renderTranscript();
  }

  // -------------------------------------------------------------------------------- incident
  function prefill(incident) {
    const form = $("incident-form");
    if (!incident.incident_type && !incident.agencies) {
      const loc = incident.location || {};
      for (const name of ["municipality", "street", "house_number", "landmark"]) {
        if (loc[name] && !form.elements[name].value) form.elements[name].value = loc[name];
      }
      return;
    }
    // What the call taker changed is theirs: an incident or proposal arriving later never overwrites it.
    const dirty = state.dirty;
    // "Not yet heard" is no type a person can save: it leaves the choice empty.
    if (incident.incident_type && incident.incident_type !== "UNKNOWN" && !dirty.has("incident_type")) {
      form.elements.incident_type.value = incident.incident_type;
    }
    if (incident.priority && !dirty.has("priority")) form.elements.priority.value = String(incident.priority);
    if (!dirty.has("agency")) {
      const codes = new Set((incident.agencies || []).map((a) => a.agency));
      form.querySelectorAll("input[name=agency]").forEach((box) => { box.checked = codes.has(box.value); });
    }
    const loc = incident.location;
    if (loc) {
      for (const name of ["municipality", "street", "house_number", "landmark"]) {
        if (loc[name] && !form.elements[name].value) form.elements[name].value = loc[name];
      }
    }
  }

  let incidentLoads = 0;
  async function loadIncident(id) {
    // Loads overlap (the call's update and the incident's own update arrive together): only the answer to
    // the latest request is current; an older answer arriving last must not put a stale incident back.
    const mine = ++incidentLoads;
    const incident = await api("GET", `/api/incidents/${id}`);
    if (mine !== incidentLoads) return;
    state.incident = incident;
    $("incident-id").textContent = incident.id;
    prefill(incident);
    $("btn-confirm").disabled = false;
    // The T-CPR times are on the timeline: a reloaded console shows the real elapsed times, and does not
    // record "recognised" a second time.
    for (const entry of incident.timeline || []) {
      if (entry.action === "tcpr_first_compression") state.compressionAt = entry.data.at;
      if (entry.action === "tcpr_recognised") state.recognisedAt = entry.data.at;
    }
    setTcpr(incident.tcpr || (state.triage && state.triage.tcpr && state.triage.tcpr.value));
    try {
      const duplicates = await api("GET", `/api/incidents/${id}/duplicates`);
      showDuplicate(duplicates[0] || null);
    } catch (e) { showDuplicate(null); }
  }

  function showDuplicate(candidate) {
    state.duplicate = candidate;
    $("duplicate").classList.toggle("hidden", !candidate);
    if (candidate) {
      const inc = candidate.incident;
      $("duplicate-text").textContent = `${inc.id} · ${typeLabel(inc.incident_type)} · ${(inc.location && inc.location.text) || ""} (${candidate.reason})`;
    }
  }

  async function linkDuplicate() {
    if (!state.duplicate || !state.call) return;
    const target = state.duplicate.incident.id;
    await api("POST", `/api/incidents/${target}/calls`, { call_id: state.call.id, reason: "duplicate confirmed by call taker" });
    toast(`${t("saved")}: ${target}`);
    await loadIncident(target);
  }

  function formValues() {
    const form = $("incident-form");
    const location = {};
    for (const name of ["municipality", "street", "house_number", "landmark"]) {
      const v = form.elements[name].value.trim();
      if (v) location[name] = v;
    }
    const agencies = [...form.querySelectorAll("input[name=agency]:checked")].map((b) => b.value);
    const note = form.elements.note.value.trim();
    return { incident_type: form.elements.incident_type.value, priority: Number(form.elements.priority.value), agencies, location, note };
  }

  async function save(ev) {
    if (ev) ev.preventDefault();
    const v = formValues();
    const status = $("save-status");
    if (!v.incident_type) { status.textContent = t("type_required"); $("f-type").focus(); return; }
    if (!v.priority) { status.textContent = t("priority_required"); $("f-priority").focus(); return; }
    try {
      let incident;
      if (state.incident) {
        const known = new Set(state.incident.agencies.map((a) => a.agency));
        const body = { incident_type: v.incident_type, priority: v.priority };
        const added = v.agencies.filter((a) => !known.has(a));
        if (added.length) body.agencies_add = added;
        if (Object.keys(v.location).length) body.location = v.location;
        if (v.note) body.note = v.note;
        incident = state.incident.confirmed_by
          ? await api("PATCH", `/api/incidents/${state.incident.id}`, body)
          : await api("POST", `/api/incidents/${state.incident.id}/confirm`, body);
      } else {
        if (!v.agencies.length) { status.textContent = t("agencies") + "?"; return; }
        const body = { incident_type: v.incident_type, priority: v.priority, agencies: v.agencies };
        if (Object.keys(v.location).length) body.location = v.location;
        if (v.note) body.note = v.note;
        if (state.call) body.call_id = state.call.id;
        incident = await api("POST", "/api/incidents", body);
      }
      state.incident = incident;
      $("incident-id").textContent = incident.id;
      $("incident-form").elements.note.value = "";
      if (state.call) {
        localStorage.removeItem(draftKey(state.call.id));
        clearTimeout(state.draftTimer);
        sendDraft(state.call.id, {});
      }
      state.dirty = new Set();
      status.textContent = `${t("saved")} ${incident.id}`;
      toast(`${t("saved")}: ${incident.id}`);
    } catch (e) {
      status.textContent = e.message;
    }
  }

  async function confirmTriage() {
    if (!state.incident) return;
    const incident = await api("POST", `/api/incidents/${state.incident.id}/confirm`, {});
    state.incident = incident;
    toast(`${t("saved")}: ${incident.id}`);
  }

  // ------------------------------------------------------------------------------------ T-CPR
  function setTcpr(on) {
    $("tcpr").classList.toggle("show", !!on);
    if (on && state.incident && state.call && state.call.answered_at && !state.recognisedAt
        && !state.recognisedPosted.has(state.incident.id)) {
      state.recognisedPosted.add(state.incident.id);
      state.recognisedAt = new Date().toISOString();
      api("POST", `/api/incidents/${state.incident.id}/tcpr`, { milestone: "recognised", call_id: state.call.id }).catch(() => {});
    }
  }

  async function firstCompression() {
    if (!state.incident || state.compressionAt) return;
    state.compressionAt = new Date().toISOString();
    await api("POST", `/api/incidents/${state.incident.id}/tcpr`,
      { milestone: "first_compression", call_id: state.call ? state.call.id : null },
      { "Idempotency-Key": `compression-${state.incident.id}` });
    toast(t("first_compression"));
  }

  function tick() {
    if (state.offered) $("offer-wait").textContent = clock(seconds(state.offered.offered_at));
    const answered = state.call && state.call.answered_at;
    if (!answered) return;
    const since = seconds(answered);
    $("t-answer").textContent = clock(since);
    const mark = (id, at, target) => {
      const node = $(id);
      if (at) {
        const took = Math.max(0, Math.round((Date.parse(at) - Date.parse(answered)) / 1000));
        node.textContent = clock(took);
        node.className = `timer ${took <= target ? "done" : "late"}`;
      } else {
        node.textContent = clock(since);
        node.className = `timer ${since > target ? "late" : ""}`;
      }
    };
    mark("t-recognition", state.recognisedAt, 60);
    mark("t-compression", state.compressionAt, 90);
  }

  // ----------------------------------------------------------------------------- queue, state
  async function refreshQueue() {
    const queues = await api("GET", "/api/queues");
    const rows = [];
    for (const desk of state.me.desks) {
      for (const entry of queues.desks[desk] || []) {
        rows.push(el("tr", {},
          el("td", {}, el("span", { class: `prio prio-${entry.priority}` }, `P${entry.priority}`)),
          el("td", {}, label("desk", desk)),
          el("td", {}, entry.caller || ""),
          el("td", {}, clock(Math.round(entry.wait_s || 0))),
          el("td", { class: "muted" }, (entry.first_words || "").slice(0, 60)),
          el("td", {}, el("button", { type: "button", onclick: () => pick(entry.call_id) }, t("accept"))),
        ));
      }
    }
    $("queue").replaceChildren(...rows);
  }

  async function pick(callId) {
    showOffer(await api("GET", `/api/calls/${callId}`));
  }

  async function refreshState() {
    const takers = await api("GET", "/api/takers");
    const mine = takers.find((x) => x.id === state.me.taker_id);
    showMyState(mine ? mine.state : null);
  }

  function showMyState(code) {
    const badge = $("my-state");
    badge.textContent = code ? label("taker_state", code) : "—";
    badge.dataset.state = code || "";
    badge.className = `state-badge state-${code || ""}`;
  }

  async function setState(target) {
    if (!state.me.taker_id) return;
    try {
      await api("PUT", `/api/takers/${state.me.taker_id}/state`, { state: target });
    } catch (e) { toast(e.message); }
    refreshState();
  }

  async function refreshHealth() {
    try { IZS.healthBanner(await api("GET", "/api/health")); } catch (e) { /* shown on next event */ }
  }

  // ------------------------------------------------------------------------------ live events
  async function onEvent(ev) {
    const current = state.call && ev.call_id === state.call.id;
    switch (ev.type) {
      case "call.offered_to_taker":
        if (ev.taker_id === state.me.taker_id) showOffer(await api("GET", `/api/calls/${ev.call_id}`));
        break;
      case "transcript.partial":
        if (current && ev.data.leg === "caller") { state.partial = ev.data.text; renderTranscript(); }
        break;
      case "transcript.final":
        if (current && ev.data.leg === "caller") { state.finals.push(ev.data.text); state.partial = ""; renderTranscript(); }
        break;
      case "triage.updated":
        if (current) showTriage(ev.data);
        break;
      case "location.updated":
        if (current || (state.offered && ev.call_id === state.offered.id)) drawMap(ev.data.location);
        break;
      case "call.updated":
        if (current && ev.data.incident_id) { state.call.incident_id = ev.data.incident_id; loadIncident(ev.data.incident_id); }
        break;
      case "call.ended":
      case "call.abandoned":
        if (state.offered && ev.call_id === state.offered.id) showOffer(null);
        if (current) {
          $("call-head").textContent += " · ■";
          state.call.state = ev.type === "call.ended" ? "ended" : "abandoned";
          showRecording(state.call);
        }
        refreshQueue();
        break;
      case "incident.updated":
      case "incident.linked":
        if (state.incident && ev.incident_id === state.incident.id) loadIncident(ev.incident_id);
        break;
      case "queue.changed":
      case "call.queued":
        refreshQueue();
        break;
      case "taker.state":
        if (ev.taker_id === state.me.taker_id) refreshState();
        break;
      case "call.connected":
        // Taken here, on the desk phone, or on this taker's other console: the server says what is in hand.
        if (ev.taker_id === state.me.taker_id) restore();
        break;
      case "component.health":
        refreshHealth();
        break;
      default:
        break;
    }
  }

  function keys(ev) {
    if (ev.ctrlKey && ev.key === "Enter") { ev.preventDefault(); save(); return; }
    if (!ev.altKey) return;
    const actions = { p: accept, o: confirmTriage, k: firstCompression, z: () => playRecording(10), r: () => setState("available"), a: () => setState("paused"), l: () => $("lang").click() };
    const action = actions[ev.key.toLowerCase()];
    if (action) { ev.preventDefault(); action(); }
  }

  IZS.boot(async (me) => {
    state.me = me;
    fillTypes();
    renderSteps();
    document.addEventListener("izs:language", () => {
      renderSteps(); fillTypes(); refreshState(); refreshQueue();
      if (state.triage) showTriage(state.triage);
      if (state.call) showRecording(state.call);
      if (state.offered) $("offer-desk").textContent = state.offered.desk ? label("desk", state.offered.desk) : "?";
    });
    $("btn-replay").addEventListener("click", () => playRecording(10));
    $("btn-recording").addEventListener("click", () => playRecording(null));
    $("incident-form").addEventListener("input", saveDraft);
    $("incident-form").addEventListener("change", saveDraft);
    $("btn-accept").addEventListener("click", accept);
    $("btn-confirm").addEventListener("click", confirmTriage);
    $("btn-compression").addEventListener("click", firstCompression);
    $("btn-link").addEventListener("click", linkDuplicate);
    $("btn-ready").addEventListener("click", () => setState("available"));
    $("btn-pause").addEventListener("click", () => setState("paused"));
    $("incident-form").addEventListener("submit", save);
    document.addEventListener("keydown", keys);
    setInterval(tick, 500);
    loadPlaces();
    IZS.live(onEvent, () => { refreshQueue(); restore(); refreshHealth(); });
  });
})();
