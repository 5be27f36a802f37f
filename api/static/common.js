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
    el.textContent = bad.length ? `${t("degraded")}: ${bad.map((c) => `${c.component}${c.detail ? " (" + c.detail + ")" : ""}`).join(", ")}` : "";
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

  return { t, api, boot, live, healthBanner, el, seconds, clock, toast, applyTexts, get me() { return me; }, get lang() { return lang; } };
})();
