// edge-agent dashboard: live updates over SSE, API forms with the session's CSRF token.
// No framework, no build step; served from the agent's package (CSP: 'self' only).
"use strict";

(function () {
  const live = document.getElementById("live");
  const badge = document.getElementById("live-state");
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";
  const TEXT = {
    live: "● 实时 live",
    reconnecting: "○ 重连中 reconnecting",
    paused: "‖ 输入中，暂停更新 paused while you type",
    static: "",
  };

  function mark(state) {
    if (!badge) return;
    badge.dataset.state = state;
    badge.textContent = state in TEXT ? TEXT[state] : state;
  }

  // A form being filled in must not be replaced under the operator's fingers.
  function editing() {
    const active = document.activeElement;
    if (active && live.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) {
      return true;
    }
    return Array.from(live.querySelectorAll("input:not([type=hidden]), textarea")).some(
      (input) => input.value !== input.defaultValue
    );
  }

  let pending = null;
  function apply(html) {
    if (editing()) {
      pending = html;
      mark("paused");
      return;
    }
    pending = null;
    live.innerHTML = html;
    live.dataset.updated = String(Date.now());
    mark("live");
  }

  function connect() {
    const source = new EventSource("/events?page=" + encodeURIComponent(live.dataset.live));
    source.addEventListener("open", () => mark(pending === null ? "live" : "paused"));
    source.addEventListener("fragment", (event) => apply(JSON.parse(event.data).html));
    source.addEventListener("login", () => {
      source.close();
      window.location.assign(
        "/login?done=session_ended&next=" + encodeURIComponent(window.location.pathname)
      );
    });
    source.addEventListener("error", () => {
      mark("reconnecting");
      // The browser retries by itself unless the server refused the stream (e.g. 401).
      if (source.readyState === EventSource.CLOSED) {
        window.setTimeout(connect, 3000);
      }
    });
  }

  if (live && live.dataset.live) {
    live.addEventListener("focusout", () => {
      window.setTimeout(() => {
        if (pending !== null && !editing()) apply(pending);
      }, 0);
    });
    live.addEventListener("reset", () => window.setTimeout(() => pending !== null && apply(pending), 0));
    connect();
  } else {
    mark("static");
  }

  // Quality forms post to the JSON API (multipart, with photos); the API takes the session
  // cookie only together with the CSRF token in a header.
  for (const form of document.querySelectorAll("form.api-form")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const out = form.querySelector("output");
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        const response = await fetch(form.dataset.api, {
          method: "POST",
          body: new FormData(form),
          headers: { "X-CSRF-Token": csrf },
          credentials: "same-origin",
        });
        const body = await response.json().catch(() => ({}));
        if (response.status === 201) {
          out.textContent = "✔ 已保存 saved";
          out.className = "result ok";
          form.reset();
        } else {
          const problems = body.problems || [body.error || "HTTP " + response.status];
          out.textContent = "✖ " + problems.join("; ");
          out.className = "result bad";
        }
      } catch (err) {
        out.textContent = "✖ " + err;
        out.className = "result bad";
      } finally {
        button.disabled = false;
      }
    });
  }
})();
