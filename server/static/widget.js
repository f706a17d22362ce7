// paracite search widget. Paste into any page:
//   <div data-paracite></div>
//   <script src="http://HOST:PORT/widget.js" defer></script>
// Optional attributes on the div: data-k="3" (passages shown), data-placeholder="...".
// It searches as you type (after a short pause, cancelling the search before) and on Enter.
// Everything renders inside a Shadow DOM, and document text only ever goes through
// textContent, so neither the host page's CSS nor the indexed text can break out.
(() => {
  "use strict";

  const script =
    document.currentScript ||
    Array.from(document.querySelectorAll("script[src]")).find((s) => /\/widget\.js(\?|$)/.test(s.src));
  const ORIGIN = new URL(script ? script.src : location.href).origin;
  const TYPING_PAUSE_MS = 350; // search once typing pauses this long
  const MIN_TYPED = 3; // characters before searching as you type (Enter searches any)

  const STYLE = `
    :host { all: initial; display: block; contain: content; }
    /* The host page's !important rules on the host element beat :host and are inherited,
       so every inherited text property is set again on the box inside the shadow root. */
    .box {
      font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
      letter-spacing: normal; word-spacing: normal; text-transform: none; text-indent: 0;
      text-shadow: none; white-space: normal; font-style: normal; font-weight: 400;
      visibility: visible; direction: ltr; cursor: auto;
      color: #1c2128; background: #fff; border: 1px solid #dfe3e8; border-radius: 10px;
      padding: 12px; text-align: left; max-width: 46rem;
    }
    form { display: flex; gap: 8px; margin: 0; }
    input {
      flex: 1; min-width: 0; font: inherit; color: inherit; background: #fff; margin: 0;
      padding: 8px 10px; border: 1px solid #b9c0ca; border-radius: 8px;
    }
    input:focus { outline: 2px solid #1d5bbf; outline-offset: 1px; }
    button {
      font: inherit; margin: 0; padding: 8px 14px; cursor: pointer;
      color: #fff; background: #1d5bbf; border: 0; border-radius: 8px;
    }
    .results[aria-busy="true"] { opacity: 0.6; }
    a { color: #1d5bbf; text-decoration: none; }
    a:hover { text-decoration: underline; }
    mark { background: #fff0a3; color: inherit; border-radius: 2px; }
    strong.short-answer { font-weight: 700; }
    .status { color: #5d6673; font-size: 13px; margin: 8px 2px 0; }
    .status:empty { display: none; }
    .error { color: #a3261b; }
    .answer { margin: 12px 0 4px; padding: 8px 12px; background: #f5f7fa; border-left: 3px solid #1d5bbf; border-radius: 6px; }
    .answer p { margin: 0; font-size: 16px; }
    .answer .source { color: #5d6673; font-size: 13px; margin-top: 2px; }
    .cite { font-weight: 600; white-space: nowrap; }
    ol { list-style: none; margin: 8px 0 0; padding: 0; }
    li { padding: 8px 0; border-top: 1px solid #eceff3; }
    .head { font-weight: 600; }
    .rank { color: #1d5bbf; margin-right: 4px; }
    .meta { color: #5d6673; font-size: 13px; }
    .text { margin: 4px 0 0; }
    .text.related { color: #5d6673; }
    .label { color: #5d6673; font-size: 12px; font-weight: 600; letter-spacing: 0.04em; text-transform: uppercase; margin-top: 10px; }
    .powered { color: #8a929d; font-size: 12px; margin-top: 8px; text-align: right; }
  `;

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function link(path, text, className) {
    const props = { href: ORIGIN + path, target: "_blank", rel: "noopener", text };
    if (className) props.class = className;
    return el("a", props);
  }

  // The text as nodes, text[span[0]:span[1]] (the short answer) in bold; all plain without.
  function withBold(text, span) {
    if (!span) return [text];
    const [start, end] = span;
    return [text.slice(0, start), el("strong", { class: "short-answer", text: text.slice(start, end) }), text.slice(end)];
  }

  // Where the short answer sits in the answer sentence: its source offsets taken from the
  // sentence's (the sentence is its source text), else where its text first appears.
  function shortSpan(answer) {
    const short = answer && answer.short;
    if (!short) return null;
    let at = short.start - answer.char_start;
    if (answer.text.slice(at, at + short.text.length) !== short.text) at = answer.text.indexOf(short.text);
    return at < 0 ? null : [at, at + short.text.length];
  }

  function highlighted(text, start, end, bold) {
    const p = el("p", { class: "text" });
    if (start == null || end == null || start >= end) {
      p.textContent = text;
      return p;
    }
    const marked = text.slice(start, end);
    const fits = bold && bold[1] <= marked.length && marked.slice(bold[0], bold[1]) !== "";
    p.append(text.slice(0, start), el("mark", {}, ...withBold(marked, fits ? bold : null)), text.slice(end));
    return p;
  }

  function renderAnswer(data) {
    const a = data.answer;
    if (!a) return el("div", { class: "answer" }, el("p", { text: data.no_answer_reason || "" }));
    return el(
      "div",
      { class: "answer" },
      el("p", {}, ...withBold(a.text, shortSpan(a)), " ", link(a.url, `[${a.passage}]`, "cite")),
      el("div", { class: "source", text: `${a.title}, ¶${a.paragraph} · ${Math.round(a.confidence * 100)}% sure` }),
    );
  }

  function renderPassage(p, answer) {
    // The passage holding the answer shows its short answer in bold inside the marked sentence.
    const bold = answer && answer.passage === p.rank ? shortSpan(answer) : null;
    const where = [p.section, `¶${p.paragraph}`, p.page ? `page ${p.page}` : null].filter(Boolean);
    return el(
      "li",
      {},
      el("div", { class: "head" }, el("span", { class: "rank", text: `[${p.rank}]` }), link(p.url, p.title)),
      el("div", { class: "meta", text: where.join(" · ") }),
      p.cited ? highlighted(p.text, p.answer_start, p.answer_end, bold) : el("p", { class: "text related", text: p.text }),
    );
  }

  function renderPassages(data) {
    // Sources (they hold the answer or a sentence close to the question) first, highlighted;
    // related passages after them, plainly.
    const sources = data.passages.filter((p) => p.cited);
    const related = data.passages.filter((p) => !p.cited);
    const parts = [];
    if (sources.length) parts.push(el("div", { class: "label", text: "Sources" }), el("ol", {}, ...sources.map((p) => renderPassage(p, data.answer))));
    if (related.length) {
      const title = sources.length ? "Related passages" : "Closest passages";
      parts.push(el("div", { class: "label", text: title }), el("ol", {}, ...related.map((p) => renderPassage(p, data.answer))));
    }
    return parts;
  }

  async function ask(question, k, signal) {
    const url = `${ORIGIN}/api/ask?` + new URLSearchParams({ q: question, k: String(k) });
    const response = await fetch(url, { headers: { Accept: "application/json" }, signal });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const message = data && data.error ? data.error.message : `HTTP ${response.status}`;
      throw new Error(message);
    }
    return data;
  }

  function mount(host) {
    if (host.shadowRoot || host.dataset.paraciteMounted) return;
    host.dataset.paraciteMounted = "1";
    const k = Math.min(Math.max(parseInt(host.dataset.k || "3", 10) || 3, 1), 50);
    const root = host.attachShadow({ mode: "open" });
    const input = el("input", {
      type: "search",
      name: "q",
      maxlength: "1000",
      placeholder: host.dataset.placeholder || "Ask a question…",
      "aria-label": "Question",
      autocomplete: "off",
    });
    const button = el("button", { type: "submit", text: "Ask" });
    const form = el("form", { role: "search" }, input, button);
    const status = el("div", { class: "status", role: "status", "aria-live": "polite" });
    const results = el("div", { class: "results" });
    const about = el("span", { class: "about" });
    const powered = el("div", { class: "powered" }, about, link("/", "paracite"));
    root.append(el("style", { text: STYLE }), el("div", { class: "box" }, form, status, results, powered));
    describeIndex(about);

    let pending = null; // the search in flight, cancelled when a newer one starts
    let pause = null; // the timer that waits for typing to pause
    let shown = ""; // the question whose results are on screen

    function say(text, isError = false) {
      status.className = isError ? "status error" : "status";
      status.textContent = text;
    }

    async function search(question) {
      if (pending) pending.abort();
      const controller = new AbortController();
      pending = controller;
      say("Searching…");
      results.setAttribute("aria-busy", "true");
      try {
        const data = await ask(question, k, controller.signal);
        if (pending !== controller) return;
        results.replaceChildren(renderAnswer(data), ...renderPassages(data));
        shown = question;
        say("");
      } catch (error) {
        if (controller.signal.aborted) return; // a newer search replaced this one
        results.replaceChildren();
        shown = "";
        say(error.message || "The search failed.", true);
      } finally {
        if (pending === controller) {
          pending = null;
          results.removeAttribute("aria-busy");
        }
      }
    }

    input.addEventListener("input", () => {
      clearTimeout(pause);
      const question = input.value.trim();
      if (question.length < MIN_TYPED) {
        if (pending) pending.abort();
        if (!question) say("");
        return;
      }
      if (question === shown) return;
      pause = setTimeout(() => search(question), TYPING_PAUSE_MS);
    });

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearTimeout(pause);
      const question = input.value.trim();
      if (!question) {
        say("Type a question first, then press Enter.");
        input.focus();
        return;
      }
      search(question);
    });
  }

  async function describeIndex(target) {
    try {
      const response = await fetch(`${ORIGIN}/healthz`, { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const health = await response.json();
      const documents = `${health.documents} document${health.documents === 1 ? "" : "s"}`;
      target.textContent = `${documents}, indexed ${age(health.built_at)} · `;
    } catch (error) {
      // the footer simply says less
    }
  }

  function age(timestamp) {
    const seconds = (Date.now() - Date.parse(timestamp)) / 1000;
    if (!(seconds >= 60)) return "just now";
    for (const [unit, size] of [["day", 86400], ["hour", 3600], ["minute", 60]]) {
      if (seconds >= size) {
        const count = Math.floor(seconds / size);
        return `${count} ${unit}${count === 1 ? "" : "s"} ago`;
      }
    }
    return "just now";
  }

  function mountAll() {
    document.querySelectorAll("[data-paracite]").forEach(mount);
  }

  window.paracite = { mount, origin: ORIGIN };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();
})();
