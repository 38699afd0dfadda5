// Live pages. An element with data-live="<event stream URL>" and data-live-swap="<element id>" opens that
// server-sent event stream; when the server says something changed, the element with that id is fetched
// again (its hx-get, else this page's address) and swapped in place. Polling (hx-trigger="every Ns") stays
// on the page and is skipped while the stream is open: it is the fallback when the stream cannot be
// opened (refused, switched off) or while it reconnects. A reconnect sends Last-Event-ID, so the server
// replays what was missed; "reset" (too much missed) reloads the page. A file, not inline: the pages'
// Content-Security-Policy allows scripts from files only.
(() => {
  const holder = document.querySelector("[data-live]");
  if (!holder || !window.EventSource) return;
  const url = holder.dataset.live;
  const swapId = holder.dataset.liveSwap;
  const CHANGES = ["status", "queue", "delay", "change", "order"];
  let open = false;
  let fetching = false;
  let again = false;
  let pause = 5000;
  let lastId = "";

  async function swap() {
    const current = document.getElementById(swapId);
    if (!current) return;
    if (current.contains(document.activeElement) && document.activeElement !== document.body) {
      // never take the focus away from someone working in it: refresh once they leave
      current.addEventListener("focusout", () => setTimeout(refresh, 0), { once: true });
      return;
    }
    const from = current.getAttribute("hx-get") || window.location.href;
    const answer = await fetch(from, { headers: { "HX-Request": "true", "X-Live-Refresh": "1" },
                                       credentials: "same-origin" });
    if (!answer.ok) return;
    const fresh = new DOMParser().parseFromString(await answer.text(), "text/html").getElementById(swapId);
    const now = document.getElementById(swapId);
    if (!fresh || !now) return;
    now.replaceWith(fresh);
    if (window.htmx) window.htmx.process(fresh);
    document.body.dataset.liveUpdated = String(Date.now());
  }

  async function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    try {
      do { again = false; await swap(); } while (again);
    } catch (error) {
      // a failed refresh waits for the next change (or the polling fallback)
    } finally {
      fetching = false;
    }
  }

  function connect() {
    // A new EventSource forgets the last id its predecessor saw: hand it over in the address.
    const stream = new EventSource(lastId ? `${url}?last_event_id=${encodeURIComponent(lastId)}` : url);
    stream.addEventListener("open", () => {
      open = true;
      pause = 5000;
      document.body.dataset.live = "open";
      // Catch up once on every open: what changed between this page's render (or the break) and the
      // subscription is in no event of this stream; from here on every change is.
      refresh();
    });
    stream.addEventListener("error", () => {
      open = false;
      document.body.dataset.live = "reconnecting";
      if (stream.readyState === EventSource.CLOSED) {
        // refused (429/503: a full or restarting server) or not a stream: poll, try the stream again later
        document.body.dataset.live = "polling";
        setTimeout(connect, pause);
        pause = Math.min(pause * 2, 60000);
      }
    });
    for (const name of CHANGES) {
      stream.addEventListener(name, (event) => {
        if (event.lastEventId) lastId = event.lastEventId;
        refresh();
      });
    }
    stream.addEventListener("reset", () => window.location.reload());
  }

  document.addEventListener("htmx:beforeRequest", (event) => {
    const elt = event.detail.elt;
    if (open && elt && elt.getAttribute && /\bevery\b/.test(elt.getAttribute("hx-trigger") || "")) {
      event.preventDefault(); // the stream tells us when to refresh
    }
  });
  connect();
})();
