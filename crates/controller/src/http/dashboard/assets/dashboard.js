// mayfly's dashboard, live: one event stream per tab, and each pass's sections swapped in.
// The server renders every section; this only places them. No polling: the stream pushes.
"use strict";
(function () {
  const ids = ["summary", "pools", "jobs", "machines", "plots", "actions"];
  const main = document.getElementById("main");
  const live = document.getElementById("live");
  const asof = document.getElementById("asof");
  if (!main || !live || !window.EventSource) return;

  function say(text, on) {
    live.textContent = text;
    live.className = on ? "sub on" : "sub off";
  }

  let source = null;
  function connect() {
    source = new EventSource("/dashboard/stream");
    source.addEventListener("open", () => say("live", true));
    source.addEventListener("pass", (e) => {
      let s;
      try { s = JSON.parse(e.data); } catch (_) { return; }
      // Keep the keyboard's place: remember which element had focus by its id or text.
      const focused = document.activeElement && document.activeElement.getAttribute("href");
      for (const id of ids) {
        const el = document.getElementById(id);
        if (el && typeof s[id] === "string" && el.innerHTML !== s[id]) el.innerHTML = s[id];
      }
      if (asof && s.asof) asof.innerHTML = s.asof;
      main.dataset.at = s.at || "";
      if (focused) {
        const again = main.querySelector('a[href="' + CSS.escape(focused) + '"]');
        if (again) again.focus();
      }
      say("live", true);
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (signed out, or the token changed): the stream is not retried.
        say("not live: sign in again (reload)", false);
      } else {
        say("reconnecting…", false);
      }
    });
  }
  connect();
  window.addEventListener("pagehide", () => source && source.close());
})();
