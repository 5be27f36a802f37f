// Shared by both consoles: login, API calls, live events, Czech/English texts. No build step, no CDN.
"use strict";

const IZS = (() => {
  const TEXTS = {
    cs: {
      login_title: "Přihlášení", username: "Uživatel", password: "Heslo", login: "Přihlásit",
      logout: "Odhlásit", wrong_login: "Špatné jméno nebo heslo", language: "English",
      degraded: "POZOR: omezený provoz", offered_call: "Nabízený hovor", no_call: "Žádný hovor",
      accept: "Přijmout", caller: "Volající", language_label: "Jazyk", location: "Místo", desk: "Pracoviště",
      waiting: "Čeká", transcript: "Přepis hovoru", triage: "Návrh třídění", agencies: "Složky",
      type: "Typ události", priority: "Priorita", confirm: "Potvrdit návrh", incident: "Událost",
      save: "Uložit událost", notes: "Poznámka", municipality: "Obec", street: "Ulice", house_number: "Č. p.",
      landmark: "Orientační bod", add_agency: "Přidat složku", duplicate: "Možná duplicita",
      link: "Připojit k této události", ready: "Připraven", pause: "Pauza", offline: "Odhlásit se",
      my_queue: "Fronta mých pracovišť", tcpr_title: "PODEZŘENÍ NA ZÁSTAVU OBĚHU – TANR",
      since_answer: "Od přijetí", recognition: "Rozpoznání (≤ 60 s)", first_compression: "První stlačení (≤ 90 s)",
      first_compression_btn: "První stlačení!", saved: "Uloženo", unsure: "Nejisté – rozhodněte",
      queues: "Fronty", takers: "Operátoři", service_level: "Úroveň služby (≤ 10 s)", answered: "Přijato",
      abandoned: "Nepřijaté – zavolat zpět", called_back: "Zavoláno zpět", open_incidents: "Otevřené události",
      health: "Stav komponent", move: "Přesunout", reprioritise: "Priorita", avg_wait: "Průměrné čekání",
      offered: "Nabídnuto", no_transcript: "bez přepisu", evidence: "Důkazy", waiting_now: "Čekající",
      state: "Stav", name: "Jméno", first_words: "První slova", none: "—",
      map: "Poloha volajícího", source: "zdroj",
      choose_type: "— vyberte typ —", choose_priority: "—", type_required: "Vyberte typ události",
      priority_required: "Vyberte prioritu", replay: "Přehrát posledních 10 s", recording: "Nahrávka hovoru",
      play_recording: "Přehrát celý hovor", not_yet_heard: "Zatím nezjištěno – volající ještě nic neřekl",
      restored: "Obnoveno ze serveru", node: "uzel", legs: "přepisované strany", backlog: "zpoždění",
      dropped: "zahozeno (10 min)", asr_waiting: "čeká na rozpoznávač", model: "model", gaps: "výpadky",
      tcpr_steps: [
        "Položte postiženého na záda na tvrdou podložku.",
        "Zakloňte mu hlavu, zkontrolujte dýchání (max. 10 s).",
        "Klekněte si vedle něj, dlaň položte doprostřed hrudníku, druhou ruku navrch.",
        "Propněte lokty a stlačujte hrudník do hloubky 5–6 cm.",
        "Tempo 100–120 za minutu, počítejte nahlas: raz, dva, tři, čtyři…",
        "Nepřestávejte, dokud nepřijede záchranná služba. Telefon dejte na hlasitý odposlech.",
      ],
    },
    en: {
      login_title: "Sign in", username: "User", password: "Password", login: "Sign in",
      logout: "Sign out", wrong_login: "Wrong user name or password", language: "Česky",
      degraded: "WARNING: degraded operation", offered_call: "Offered call", no_call: "No call",
      accept: "Accept", caller: "Caller", language_label: "Language", location: "Location", desk: "Desk",
      waiting: "Waiting", transcript: "Live transcript", triage: "Triage suggestion", agencies: "Agencies",
      type: "Incident type", priority: "Priority", confirm: "Confirm suggestion", incident: "Incident",
      save: "Save incident", notes: "Note", municipality: "Municipality", street: "Street", house_number: "No.",
      landmark: "Landmark", add_agency: "Add agency", duplicate: "Possible duplicate",
      link: "Link to this incident", ready: "Ready", pause: "Pause", offline: "Log out",
      my_queue: "My desks' queue", tcpr_title: "SUSPECTED CARDIAC ARREST – T-CPR",
      since_answer: "Since answer", recognition: "Recognition (≤ 60 s)", first_compression: "First compression (≤ 90 s)",
      first_compression_btn: "First compression!", saved: "Saved", unsure: "Unsure – you decide",
      queues: "Queues", takers: "Call takers", service_level: "Service level (≤ 10 s)", answered: "Answered",
      abandoned: "Abandoned – call back", called_back: "Called back", open_incidents: "Open incidents",
      health: "Components", move: "Move", reprioritise: "Priority", avg_wait: "Average wait",
      offered: "Offered", no_transcript: "no transcript", evidence: "Evidence", waiting_now: "Waiting",
      state: "State", name: "Name", first_words: "First words", none: "—",
      map: "Caller position", source: "source",
      choose_type: "— choose a type —", choose_priority: "—", type_required: "Choose the incident type",
      priority_required: "Choose the priority", replay: "Replay last 10 s", recording: "Call recording",
      play_recording: "Play the whole call", not_yet_heard: "Not yet heard – the caller has said nothing yet",
      restored: "Restored from the server", node: "node", legs: "legs transcribed", backlog: "backlog",
      dropped: "dropped (10 min)", asr_waiting: "waiting for recognizer", model: "model", gaps: "gaps",
      tcpr_steps: [
        "Lay the patient on their back on a firm surface.",
        "Tilt the head back, check breathing (10 s at most).",
        "Kneel beside them, heel of one hand in the centre of the chest, the other hand on top.",
        "Arms straight, push the chest down 5–6 cm.",
        "100–120 a minute, count aloud: one, two, three, four…",
        "Do not stop until the ambulance crew takes over. Put the phone on speaker.",
      ],
    },
  };
  let lang = localStorage.getItem("izs.lang") || "cs";
  const t = (key) => (TEXTS[lang] && TEXTS[lang][key]) ?? TEXTS.cs[key] ?? key;

  // Codes from the API shown by name in the console's language (never MED_STROKE on a screen).
  const LABELS = {
    type: {
      cs: {
        UNKNOWN: "Zatím nezjištěno", FIRE_BUILDING: "Požár budovy", FIRE_VEHICLE: "Požár vozidla", FIRE_WILDLAND: "Požár v přírodě",
        FIRE_OTHER: "Požár – jiný", TRAFFIC_ACCIDENT: "Dopravní nehoda", MED_CARDIAC_ARREST: "Zástava oběhu", MED_BREATHING: "Dušnost",
        MED_CHEST_PAIN: "Bolest na hrudi", MED_STROKE: "Cévní mozková příhoda", MED_TRAUMA: "Úraz", MED_UNCONSCIOUS: "Bezvědomí",
        MED_SEIZURE: "Křeče", MED_CHILDBIRTH: "Porod", MED_POISONING: "Otrava", MED_ALLERGY: "Alergická reakce",
        MED_PSYCHIATRIC: "Psychiatrický stav", MED_OTHER: "Zdravotní potíže – jiné", POLICE_BURGLARY: "Vloupání", POLICE_ASSAULT: "Napadení",
        POLICE_DOMESTIC_VIOLENCE: "Domácí násilí", POLICE_THEFT: "Krádež", POLICE_WEAPON: "Ozbrojená osoba",
        POLICE_MISSING_PERSON: "Pohřešovaná osoba", POLICE_TRAFFIC: "Dopravní přestupek", POLICE_PUBLIC_ORDER: "Narušení veřejného pořádku",
        POLICE_OTHER: "Policejní událost – jiná", TECH_RESCUE: "Technická pomoc", HAZMAT_GAS: "Únik plynu",
        HAZMAT_CHEMICAL: "Únik nebezpečné látky", WEATHER_FLOOD: "Povodeň", NON_EMERGENCY: "Nejde o tísňovou událost",
        SILENT_OR_HOAX: "Tiché / zneužité volání",
      },
      en: {
        UNKNOWN: "Not yet heard", FIRE_BUILDING: "Building fire", FIRE_VEHICLE: "Vehicle fire", FIRE_WILDLAND: "Wildland fire",
        FIRE_OTHER: "Fire – other", TRAFFIC_ACCIDENT: "Traffic accident", MED_CARDIAC_ARREST: "Cardiac arrest", MED_BREATHING: "Breathing problem",
        MED_CHEST_PAIN: "Chest pain", MED_STROKE: "Stroke", MED_TRAUMA: "Injury", MED_UNCONSCIOUS: "Unconscious",
        MED_SEIZURE: "Seizure", MED_CHILDBIRTH: "Childbirth", MED_POISONING: "Poisoning", MED_ALLERGY: "Allergic reaction",
        MED_PSYCHIATRIC: "Psychiatric emergency", MED_OTHER: "Medical – other", POLICE_BURGLARY: "Burglary", POLICE_ASSAULT: "Assault",
        POLICE_DOMESTIC_VIOLENCE: "Domestic violence", POLICE_THEFT: "Theft", POLICE_WEAPON: "Armed person",
        POLICE_MISSING_PERSON: "Missing person", POLICE_TRAFFIC: "Traffic offence", POLICE_PUBLIC_ORDER: "Public order",
        POLICE_OTHER: "Police – other", TECH_RESCUE: "Technical rescue", HAZMAT_GAS: "Gas leak",
        HAZMAT_CHEMICAL: "Hazardous substance", WEATHER_FLOOD: "Flood", NON_EMERGENCY: "Not an emergency",
        SILENT_OR_HOAX: "Silent / hoax call",
      },
    },
    taker_state: {
      cs: { available: "Připraven", busy: "Hovor", wrap_up: "Dokončuje", paused: "Pauza", offline: "Odhlášen" },
      en: { available: "Available", busy: "On a call", wrap_up: "Wrap-up", paused: "Paused", offline: "Offline" },
    },
    agency: {
      cs: { HZS: "Hasiči (HZS)", ZZS: "Záchranka (ZZS)", PCR: "Policie (PČR)" },
      en: { HZS: "Fire (HZS)", ZZS: "Ambulance (ZZS)", PCR: "Police (PČR)" },
    },
    agency_status: {
      cs: { proposed: "navrženo", alerted: "vyrozuměno", acknowledged: "potvrzeno", dispatched: "vysláno", closed: "ukončeno" },
      en: { proposed: "proposed", alerted: "alerted", acknowledged: "acknowledged", dispatched: "dispatched", closed: "closed" },
    },
    desk: {
      cs: { "112": "Linka 112", HZS: "Hasiči", ZZS: "Záchranka", PCR: "Policie" },
      en: { "112": "112 line", HZS: "Fire", ZZS: "Ambulance", PCR: "Police" },
    },
    incident_status: {
      cs: { new: "Nová", active: "Aktivní", closed: "Uzavřená" },
      en: { new: "New", active: "Active", closed: "Closed" },
    },
    call_state: {
      cs: { ringing: "vyzvání", queued: "ve frontě", connected: "probíhá", ended: "ukončen", abandoned: "nepřijat" },
      en: { ringing: "ringing", queued: "queued", connected: "in progress", ended: "ended", abandoned: "abandoned" },
    },
    recording: {
      cs: { recording: "nahrává se", complete: "nahrávka úplná", partial: "nahrávka s výpadky", failed: "nenahráno (chyba)",
            purged: "nahrávka smazána (skartace)", interrupted: "nahrávka přerušena", not_recorded: "nenahráno" },
      en: { recording: "recording", complete: "recording complete", partial: "recording with gaps", failed: "not recorded (failure)",
            purged: "recording purged (retention)", interrupted: "recording interrupted", not_recorded: "not recorded" },
    },
    component: {
      cs: { database: "databáze", redis: "živý stav (Redis)", sip: "SIP", ami: "ústředna (AMI)", transcription: "přepis řeči", recording: "nahrávání hovorů" },
      en: { database: "database", redis: "live state (Redis)", sip: "SIP", ami: "PBX (AMI)", transcription: "speech recognition", recording: "call recording" },
    },
  };
  // label("type", "MED_STROKE") -> "Cévní mozková příhoda"; an unknown code is shown readable, not raw.
  const label = (kind, code) => {
    if (code === null || code === undefined || code === "") return "";
    const table = LABELS[kind] || {};
    const text = (table[lang] && table[lang][code]) ?? (table.cs && table.cs[code]);
    return text ?? String(code).replaceAll("_", " ").toLowerCase();
  };

  function applyTexts(root = document) {
    root.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
    document.documentElement.lang = lang;
  }
  function toggleLanguage() {
    lang = lang === "cs" ? "en" : "cs";
    localStorage.setItem("izs.lang", lang);
    applyTexts();
    document.dispatchEvent(new CustomEvent("izs:language"));
  }

  let token = sessionStorage.getItem("izs.token");
  let me = null;

  async function api(method, path, body, extraHeaders = {}) {
    const headers = { ...extraHeaders };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (response.status === 401 && path !== "/api/auth/token") { forget(); throw new Error("unauthenticated"); }
    const type = response.headers.get("content-type") || "";
    const data = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) {
      const error = new Error((data && data.message) || response.statusText);
      error.status = response.status; error.body = data;
      throw error;
    }
    return data;
  }

  function forget() {
    sessionStorage.removeItem("izs.token");
    token = null;
    location.reload();
  }

  // Logging out revokes the token on the server (every open console of this user closes), then forgets it.
  async function logout() {
    if (token) {
      try { await fetch("/api/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } }); }
      catch (e) { console.error("logout", e); }
    }
    forget();
  }

  function showLogin(onDone) {
    const form = document.getElementById("login");
    form.classList.remove("hidden");
    document.getElementById("app").classList.add("hidden");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const error = document.getElementById("login-error");
      error.textContent = "";
      try {
        const result = await api("POST", "/api/auth/token", {
          username: form.elements.username.value, password: form.elements.password.value,
        });
        token = result.access_token;
        sessionStorage.setItem("izs.token", token);
        form.classList.add("hidden");
        await start(onDone);
      } catch (e) {
        error.textContent = t("wrong_login");
      }
    });
    form.elements.username.focus();
  }

  async function start(onReady) {
    me = await api("GET", "/api/me");
    document.getElementById("app").classList.remove("hidden");
    document.getElementById("who").textContent = `${me.username} (${me.role})`;
    applyTexts();
    await onReady(me);
  }

  function boot(onReady) {
    applyTexts();
    document.getElementById("lang").addEventListener("click", toggleLanguage);
    document.getElementById("logout").addEventListener("click", logout);
    if (token) start(onReady).catch(() => showLogin(onReady));
    else showLogin(onReady);
  }

  // Live events with automatic reconnect; after a reconnect the page resyncs over REST (onOpen).
  function live(onEvent, onOpen) {
    let delay = 500;
    const connect = () => {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      // The token goes in the first message, never in the URL (URLs end up in proxy and server logs).
      const ws = new WebSocket(`${scheme}://${location.host}/api/live`);
      ws.onopen = () => {
        ws.send(JSON.stringify({ type: "auth", token }));
        delay = 500; onOpen && onOpen();
      };
      ws.onmessage = (msg) => {
        try { onEvent(JSON.parse(msg.data)); } catch (e) { console.error("live event", e); }
      };
      ws.onclose = (ev) => {
        if (ev.code === 1008) { forget(); return; }
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 5000);
      };
    };
    connect();
  }

  function healthBanner(components) {
    const bad = components.filter((c) => !c.healthy);
    const el = document.getElementById("health");
    const name = (c) => { const [base, node] = c.component.split("@"); return label("component", base) + (node ? ` (${t("node")} ${node})` : ""); };
    el.textContent = bad.length ? `${t("degraded")}: ${bad.map((c) => `${name(c)}${c.detail ? " (" + c.detail + ")" : ""}`).join(", ")}` : "";
    el.classList.toggle("show", bad.length > 0);
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function seconds(fromIso) {
    return fromIso ? Math.max(0, Math.floor((Date.now() - Date.parse(fromIso)) / 1000)) : 0;
  }
  function clock(totalSeconds) {
    const m = Math.floor(totalSeconds / 60), s = totalSeconds % 60;
    return `${m}:${String(s).padStart(2, "0")}`;
  }
  function toast(text) {
    const node = el("div", { class: "toast", role: "status" }, text);
    document.body.append(node);
    setTimeout(() => node.remove(), 2500);
  }

  return { t, label, LABELS, api, boot, live, healthBanner, el, seconds, clock, toast, applyTexts, get me() { return me; }, get lang() { return lang; }, get token() { return token; } };
})();
