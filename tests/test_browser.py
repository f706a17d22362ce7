"""End to end: a real uvicorn server and a real headless Chromium (Debian's, via Playwright).

Screenshots go to test-artifacts/ at the repository root (gitignored).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect, sync_playwright
from server_helpers import EVIL_QUESTION, SCRIPT, SEED_QUESTION, LiveServer

from indexer.retrieval import Searcher
from indexer.settings import Settings
from server.app import create_app

pytest_plugins = ["server_helpers"]
pytestmark = pytest.mark.browser
# Assertions wait up to 30 s (Playwright's default, 5 s, is a guess at speed that a loaded
# 2-core machine can miss); they still pass as soon as the page is right.
expect.set_options(timeout=30_000)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WIDGET_BLUE = "rgb(29, 91, 191)"

# In CI a missing browser fails these tests (the `browser` fixture); elsewhere they are skipped.
if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(f"{CHROMIUM} is not installed (CI installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def live_server(mixed_index: Path, mixed_searcher: Searcher) -> Iterator[LiveServer]:
    settings = Settings(index=mixed_index)
    with LiveServer(create_app(settings, mixed_searcher)) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()
    assert not dialogs, f"a script ran from document text: {dialogs}"


@pytest.fixture(scope="module")
def host_site(tmp_path_factory: pytest.TempPathFactory, live_server: LiveServer) -> Iterator[str]:
    """A page on another origin (another port) with the two-line widget snippet and an iframe."""
    folder = tmp_path_factory.mktemp("host-site")
    (folder / "index.html").write_text(host_page(live_server.url), encoding="utf-8")
    (folder / "many.html").write_text(many_widgets_page(live_server.url), encoding="utf-8")
    handler = functools.partial(QuietHandler, directory=str(folder))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
        httpd.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def host_page(api: str) -> str:
    """A blog page whose own CSS is hostile to anything it does not know about."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>A blog on another origin</title>
<style>
  body {{ font-family: Georgia, serif; font-size: 22px; color: #5a2d0c; background: #fdf6e3; }}
  * {{ letter-spacing: 0.2em !important; }}
  button {{ background: hotpink !important; border: 4px dashed green; }}
  input, mark {{ display: none; }}
  a {{ color: rgb(0, 128, 0); }}
  div {{ border: 1px solid red; }}
</style></head>
<body>
  <h1>My blog</h1>
  <p>Ask my documents: <a id="own-link" href="#">a link of the host page</a></p>
  <button id="own-button">host button</button>
  <div data-paracite></div><script src="{api}/widget.js" defer></script>
  <h2>Or in a frame</h2>
  <iframe id="frame" src="{api}/embed" title="paracite" style="width:100%;height:420px"></iframe>
</body></html>
"""


HANDBOOK_PLACEHOLDER = "Ask the handbook…"


def many_widgets_page(api: str) -> str:
    """Two widgets with and without the optional attributes, and a third added by script."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Several widgets</title></head>
<body>
  <div id="configured" data-paracite data-k="2" data-placeholder="{HANDBOOK_PLACEHOLDER}"></div>
  <div id="plain" data-paracite></div>
  <script src="{api}/widget.js" defer></script>
</body></html>
"""


def add_widget(page: Page, element_id: str, k: str) -> None:
    page.evaluate(
        """([id, k]) => {
            const div = document.createElement("div");
            div.id = id;
            div.setAttribute("data-paracite", "");
            div.dataset.k = k;
            document.body.appendChild(div);
        }""",
        [element_id, k],
    )


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=False)
    return path


def test_ask_on_home_page_then_follow_the_citation(page: Page, live_server: LiveServer) -> None:
    page.goto(live_server.url + "/")
    page.get_by_role("searchbox").fill(SEED_QUESTION)
    page.get_by_role("button", name="Ask").click()
    answer = page.locator("section.answer .answer-text")
    expect(answer).to_be_visible()
    expect(page.locator("li.passage mark").first).to_be_visible()
    screenshot(page, "results.png")

    citation = answer.locator("a.cite")
    expect(citation).to_have_text(re.compile(r"^\[\d+\]$"))
    answer_text = answer.inner_text().rsplit(" [", 1)[0]
    citation.click()
    page.wait_for_url("**/doc/**#p*")
    paragraph = page.locator(".para:target")
    expect(paragraph).to_have_class("para cited")
    expect(paragraph.locator("mark")).to_have_text(answer_text)
    expect(paragraph).to_be_in_viewport()
    screenshot(page, "cited-paragraph.png")


def test_slash_focuses_the_search_box_but_not_while_typing(
    page: Page, live_server: LiveServer
) -> None:
    page.goto(live_server.url + "/?" + urlencode({"q": SEED_QUESTION}))
    box = page.get_by_role("searchbox")
    page.locator("main").click()
    expect(box).not_to_be_focused()
    page.keyboard.press("/")
    expect(box).to_be_focused()
    expect(box).to_have_value(SEED_QUESTION)  # the "/" selected it, not typed into it
    page.keyboard.type("and/or")
    expect(box).to_have_value("and/or")  # typed over the selection, "/" included


def test_copy_citation_puts_title_paragraph_and_url_on_the_clipboard(
    browser: Browser, live_server: LiveServer
) -> None:
    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    documents = page.request.get(live_server.url + "/api/documents").json()["documents"]
    seed = next(d for d in documents if d["doc_id"].startswith("004_"))
    page.goto(live_server.url + seed["url"] + "#p3")
    button = page.locator("#p3 button.copy")
    button.click()
    expect(button).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == f"{seed['title']}, ¶3 — {live_server.url}{seed['url']}#p3"
    context.close()


def test_widget_on_another_origin_answers_with_citations(
    page: Page, live_server: LiveServer, host_site: str
) -> None:
    page.goto(host_site)
    widget = page.locator("[data-paracite]")
    widget.get_by_role("searchbox").fill(SEED_QUESTION)
    widget.get_by_role("button", name="Ask").click()
    answer = widget.locator(".answer")
    expect(answer.locator("a.cite")).to_be_visible()
    expect(widget.locator("li")).to_have_count(3)
    expect(widget.locator("li mark").first).to_be_visible()  # host CSS hides marks; not ours
    labels = widget.locator(".label").all_text_contents()
    assert labels[0] == "Sources" and set(labels) <= {"Sources", "Related passages"}
    expect(widget.locator("li:has(p.related) mark")).to_have_count(0)  # related: no highlight

    links = widget.locator("a[href*='/doc/']")
    hrefs = [links.nth(i).get_attribute("href") or "" for i in range(links.count())]
    assert hrefs and all(href.startswith(live_server.url + "/doc/") for href in hrefs)

    # The host page's CSS does not reach into the widget, and the widget's stays inside it.
    ask_button = widget.get_by_role("button", name="Ask")
    assert ask_button.evaluate("b => getComputedStyle(b).backgroundColor") == WIDGET_BLUE
    for element in (ask_button, answer.locator("p").first, widget.locator("li").first):
        assert element.evaluate("e => getComputedStyle(e).letterSpacing") == "normal"
        assert "Georgia" not in element.evaluate("e => getComputedStyle(e).fontFamily")
    own_link = page.locator("#own-link")
    assert own_link.evaluate("a => getComputedStyle(a).color") == "rgb(0, 128, 0)"
    own_button = page.locator("#own-button")
    assert own_button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(255, 105, 180)"

    widget.scroll_into_view_if_needed()
    screenshot(page, "widget.png")

    with page.expect_popup() as popup:
        answer.locator("a.cite").click()
    landed = popup.value
    landed.wait_for_load_state()
    expect(landed.locator(".para:target mark")).to_be_visible()


def test_widget_shows_document_markup_as_text(
    page: Page, live_server: LiveServer, host_site: str
) -> None:
    page.goto(host_site)
    widget = page.locator("[data-paracite]")
    widget.get_by_role("searchbox").fill(EVIL_QUESTION)
    widget.get_by_role("button", name="Ask").click()
    expect(widget.locator("li").first).to_be_visible()
    texts = widget.locator("li").all_inner_texts()
    assert any(SCRIPT in text for text in texts), texts
    shadow_scripts = widget.evaluate("el => el.shadowRoot.querySelectorAll('script, img').length")
    assert shadow_scripts == 0
    screenshot(page, "widget-escaped.png")


def test_widget_reports_bad_input(page: Page, live_server: LiveServer, host_site: str) -> None:
    page.goto(host_site)
    widget = page.locator("[data-paracite]")
    # maxlength stops typing past 1,000 characters; a script setting the value is not stopped.
    widget.get_by_role("searchbox").evaluate("(input) => { input.value = 'why '.repeat(300); }")
    widget.get_by_role("button", name="Ask").click()
    expect(widget.locator(".status.error")).to_contain_text("longer than 1000")


def test_embed_iframe_answers_inside_the_host_page(
    page: Page, live_server: LiveServer, host_site: str
) -> None:
    page.goto(host_site)
    frame = page.frame_locator("#frame")
    frame.get_by_role("searchbox").fill(SEED_QUESTION)
    frame.get_by_role("button", name="Ask").click()
    expect(frame.locator("section.answer a.cite")).to_be_visible()
    # Relative in the page, so it resolves against the frame's own address (paracite's).
    href = frame.locator("section.answer a.cite").evaluate("a => a.href")
    assert href.startswith(live_server.url + "/doc/")
    page.locator("#frame").scroll_into_view_if_needed()
    screenshot(page, "embed-iframe.png")


def test_widget_searches_as_you_type_and_says_why_blank_does_nothing(
    page: Page, live_server: LiveServer, host_site: str
) -> None:
    page.goto(host_site)
    widget = page.locator("[data-paracite]")
    box = widget.get_by_role("searchbox")
    widget.get_by_role("button", name="Ask").click()
    expect(widget.locator(".status")).to_have_text("Type a question first, then press Enter.")
    expect(box).to_be_focused()

    box.press_sequentially(SEED_QUESTION)  # no Enter: a pause in typing searches
    expect(widget.locator(".answer a.cite")).to_be_visible()
    expect(widget.locator("li")).to_have_count(3)
    # the footer says what is searched, from /healthz
    expect(widget.locator(".powered")).to_contain_text(re.compile(r"\d+ documents, indexed "))


def test_widget_drops_a_stale_search_for_the_newer_one(
    page: Page, live_server: LiveServer, host_site: str
) -> None:
    held: list[Route] = []

    def hold_the_first_question(route: Route) -> None:
        if "lighthouse" in route.request.url and not held:
            held.append(route)  # answered only after the newer question is
        else:
            route.continue_()

    page.add_init_script(
        "window.abortedSearches = 0; const realFetch = window.fetch;"
        "window.fetch = (url, options) => {"
        "  options?.signal?.addEventListener('abort', () => window.abortedSearches++);"
        "  return realFetch(url, options); };"
    )
    page.route("**/api/ask?*", hold_the_first_question)
    page.goto(host_site)
    widget = page.locator("[data-paracite]")
    box = widget.get_by_role("searchbox")
    box.fill("lighthouse keeper")
    expect(widget.locator(".status")).to_have_text("Searching…")
    box.fill(SEED_QUESTION)
    box.press("Enter")
    expect(widget.locator(".answer a.cite")).to_be_visible()
    answer = widget.locator(".answer p").first.inner_text()
    assert page.evaluate("window.abortedSearches") == 1
    with contextlib.suppress(Exception):  # the browser already gave up on it
        held[0].continue_()
    page.wait_for_timeout(500)  # give a stale answer the chance to (wrongly) show
    assert widget.locator(".answer p").first.inner_text() == answer
    expect(widget.locator(".status")).to_have_text("")


def test_widget_attributes_and_mount_for_widgets_added_later(
    page: Page, live_server: LiveServer, host_site: str
) -> None:
    page.goto(host_site + "many.html")
    configured, plain = page.locator("#configured"), page.locator("#plain")
    expect(configured.get_by_role("searchbox")).to_have_attribute(
        "placeholder", HANDBOOK_PLACEHOLDER
    )
    assert plain.get_by_role("searchbox").get_attribute("placeholder") != HANDBOOK_PLACEHOLDER

    # A widget added after the page loaded waits for window.paracite.mount().
    page.wait_for_function("() => window.paracite !== undefined")
    add_widget(page, "later", "1")
    later = page.locator("#later")
    assert later.evaluate("el => el.shadowRoot") is None
    later.evaluate("el => window.paracite.mount(el)")
    later.evaluate("el => window.paracite.mount(el)")  # mounting twice changes nothing
    assert later.evaluate("el => el.shadowRoot.querySelectorAll('form').length") == 1

    # data-k sets how many passages each widget shows (3 without it).
    for widget, count in ((configured, 2), (plain, 3), (later, 1)):
        widget.get_by_role("searchbox").fill(SEED_QUESTION)
        widget.get_by_role("button", name="Ask").click()
        expect(widget.locator(".answer a.cite")).to_be_visible()
        expect(widget.locator("li")).to_have_count(count)


NUMBER_QUESTION = "How many documents from Pyongyang were examined?"


def font_weight(locator: Locator) -> int:
    return int(locator.evaluate("e => getComputedStyle(e).fontWeight"))


def test_short_answer_is_bold_on_the_results_and_document_pages(
    page: Page, live_server: LiveServer
) -> None:
    page.goto(live_server.url + "/?" + urlencode({"q": NUMBER_QUESTION}))
    in_answer = page.locator("section.answer .answer-text strong.short-answer")
    expect(in_answer).to_have_text("54")
    assert font_weight(in_answer) >= 700
    in_source = page.locator("li.passage mark strong.short-answer")
    expect(in_source).to_have_count(1)
    expect(in_source).to_have_text("54")
    assert font_weight(in_source) >= 700
    screenshot(page, "short-answer.png")

    page.locator("section.answer a.cite").click()
    page.wait_for_url("**/doc/**#p*")
    on_document = page.locator(".para:target mark strong.short-answer")
    expect(on_document).to_have_text("54")
    assert font_weight(on_document) >= 700


def test_widget_shows_the_short_answer_bold(
    page: Page, live_server: LiveServer, host_site: str
) -> None:
    page.goto(host_site)
    widget = page.locator("[data-paracite]")
    widget.get_by_role("searchbox").fill(NUMBER_QUESTION)
    widget.get_by_role("button", name="Ask").click()
    in_answer = widget.locator(".answer strong.short-answer")
    expect(in_answer).to_have_text("54")
    expect(widget.locator(".answer p").first).to_contain_text("During this period, 54 documents")
    assert font_weight(in_answer) >= 700
    in_source = widget.locator("li mark strong.short-answer")
    expect(in_source).to_have_count(1)
    expect(in_source).to_have_text("54")
    assert font_weight(in_source) >= 700
    widget.scroll_into_view_if_needed()
    screenshot(page, "widget-short-answer.png")
