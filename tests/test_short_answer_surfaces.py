"""The short answer on every surface but the browser: JSON API, results, document and embed
pages, and the CLI (text and --json). The browser and widget are in test_browser.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

from fastapi.testclient import TestClient
from server_helpers import SEED_QUESTION

pytest_plugins = ["server_helpers"]

# The seed sentence "During this period, 54 documents were closely examined, ..." (issue 13).
NUMBER_QUESTION = "How many documents from Pyongyang were examined?"
SHORT = "54"
BOLD = f'<strong class="short-answer">{SHORT}</strong>'


def ask(client: TestClient, question: str = NUMBER_QUESTION) -> dict:
    response = client.get("/api/ask", params={"q": question})
    assert response.status_code == 200, response.text
    return response.json()


def test_api_short_answer_points_into_the_document_source(client: TestClient) -> None:
    answer = ask(client)["answer"]
    short = answer["short"]
    assert short["text"] == SHORT
    document = client.get(f"/api/documents/{answer['doc_id']}").json()
    assert document["source"][short["start"] : short["end"]] == SHORT
    assert answer["char_start"] <= short["start"] < short["end"] <= answer["char_end"]
    assert f"short={short['start']}-{short['end']}" in answer["url"]


def test_api_short_answer_is_null_for_a_question_without_a_typed_answer(
    client: TestClient,
) -> None:
    data = ask(client, SEED_QUESTION)
    assert data["answer"] is not None and data["answer"]["short"] is None
    assert all("short=" not in passage["url"] for passage in data["passages"])


def test_openapi_describes_the_short_answer(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schemas["ShortAnswerOut"]["properties"]) == {"text", "start", "end"}
    assert "short" in schemas["AnswerOut"]["required"]


def test_results_page_shows_the_short_answer_bold_in_the_answer_and_the_source(
    client: TestClient,
) -> None:
    html = client.get("/", params={"q": NUMBER_QUESTION}).text
    answer = re.search(r'<p class="answer-text">(.*?)</p>', html, re.DOTALL)
    assert answer is not None and BOLD in answer.group(1)
    marked = re.findall(r"<mark>(.*?)</mark>", html, re.DOTALL)
    assert sum(BOLD in text for text in marked) == 1  # only the passage holding the answer
    holding = next(text for text in marked if BOLD in text)
    assert unescape(re.sub(r"</?strong[^>]*>", "", holding)).startswith(
        "During this period, 54 documents"
    )


def test_document_page_shows_the_short_answer_bold_inside_the_marked_sentence(
    client: TestClient,
) -> None:
    answer = ask(client)["answer"]
    html = client.get(answer["url"]).text
    marked = re.findall(r"<mark>(.*?)</mark>", html, re.DOTALL)
    assert len(marked) == 1 and BOLD in marked[0]
    assert unescape(re.sub(r"</?strong[^>]*>", "", marked[0])) == answer["text"]
    # A short span outside the highlighted sentence is ignored.
    stray = re.sub(r"short=\d+-\d+", "short=0-5", answer["url"])
    assert "short-answer" not in client.get(stray).text


def test_embed_page_shows_the_short_answer_bold(client: TestClient) -> None:
    html = client.get("/embed", params={"q": NUMBER_QUESTION}).text
    answer = re.search(r'<p class="answer-text">(.*?)</p>', html, re.DOTALL)
    assert answer is not None and BOLD in answer.group(1)
    assert any(BOLD in text for text in re.findall(r"<mark>(.*?)</mark>", html, re.DOTALL))


def paracite(*args: str, color: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400"}
    env.pop("NO_COLOR", None)
    if color:
        env["FORCE_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_cli_prints_the_short_answer_first_and_bold_in_the_sentence(seed_index: Path) -> None:
    plain = paracite("ask", NUMBER_QUESTION, "--index", str(seed_index), "-k", "2")
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert lines[0] == SHORT
    assert lines[1].startswith("During this period, 54 documents")
    colored = paracite("ask", NUMBER_QUESTION, "--index", str(seed_index), "-k", "2", color=True)
    bold = re.compile(r"\x1b\[1(;\d+)*m54\x1b\[0m")
    # In the answer sentence and in the passage's highlighted sentence.
    assert len(bold.findall(colored.stdout)) >= 2, colored.stdout


def test_cli_json_has_the_short_answer(seed_index: Path) -> None:
    result = paracite("ask", NUMBER_QUESTION, "--index", str(seed_index), "--json")
    assert result.returncode == 0, result.stderr
    short = json.loads(result.stdout)["answer"]["short"]
    assert short["text"] == SHORT and short["end"] - short["start"] == len(SHORT)
