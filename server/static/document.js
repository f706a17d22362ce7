// Document page: the "Copy citation" buttons (the page works without it; they stay hidden).
(() => {
  "use strict";

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain http on a LAN address is not a secure context: fall back to a hidden textarea.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  for (const button of document.querySelectorAll("button.copy[data-citation]")) {
    button.hidden = false;
    button.addEventListener("click", () => {
      // data-url is absolute with PARACITE_PUBLIC_URL, else relative to this page's address.
      const citation = `${button.dataset.citation} — ${new URL(button.dataset.url, location.href).href}`;
      copy(citation).then(
        () => { button.textContent = "Copied"; },
        () => { button.textContent = "Press Ctrl+C"; window.prompt("Citation", citation); },
      );
      setTimeout(() => { button.textContent = "Copy citation"; }, 1800);
    });
  }

  // Arriving with ?hl= but no #p<n>: bring the cited paragraph into view anyway.
  const cited = document.querySelector(".para.cited");
  if (cited && !location.hash) cited.scrollIntoView({ block: "center" });
})();
