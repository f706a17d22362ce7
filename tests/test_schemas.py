"""One response schema: the JSON API, its OpenAPI document and `--json` on the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from server_helpers import SEED_QUESTION

pytest_plugins = ["server_helpers"]

JSON_ROUTES = {
    ("/api/ask", "get"): "AskResponse",
    ("/api/ask", "post"): "AskResponse",
    ("/api/search", "get"): "AskResponse",
    ("/api/documents", "get"): "DocumentsResponse",
    ("/api/documents/{doc_id}", "get"): "DocumentResponse",
    ("/healthz", "get"): "HealthResponse",
}


def test_openapi_names_the_response_schema_of_every_json_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for (path, method), model in JSON_ROUTES.items():
        responses = schema["paths"][path][method]["responses"]
        ok = responses["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{model}"}, (path, method)
        errors = {
            status: response["content"]["application/json"]["schema"]
            for status, response in responses.items()
            if status[0] in "45"
        }
        assert errors and set(map(str, errors.values())) == {
            str({"$ref": "#/components/schemas/ErrorResponse"})
        }, (path, method, errors)
    models = schema["components"]["schemas"]
    assert set(models["PassageOut"]["required"]) >= {"rank", "doc_id", "paragraph", "url"}
    assert "url" in models["AnswerOut"]["properties"]


def test_cli_json_is_the_api_body(client: TestClient, seed_index: Path) -> None:
    for command, path in (("ask", "/api/ask"), ("search", "/api/search")):
        printed = subprocess.run(
            [sys.executable, "-m", "server.cli", command, SEED_QUESTION, "--json", "-k", "3",
             "--index", str(seed_index)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        from_cli = json.loads(printed.stdout)
        from_api = client.get(path, params={"q": SEED_QUESTION, "k": 3}).json()
        for body in (from_cli, from_api):
            body.pop("took_ms")
        assert from_cli == from_api
        assert all(passage["url"].startswith("/doc/") for passage in from_cli["passages"])


def test_validation_errors_are_plain_sentences(client: TestClient) -> None:
    said = {
        "/api/ask?q=trust&k=five": "k must be a whole number from 1 to 50",
        "/api/ask?q=trust&k=3.5": "k must be a whole number from 1 to 50",
        "/api/search?q=trust&mode=psychic": "mode must be one of hybrid, bm25, dense",
    }
    for path, message in said.items():
        response = client.get(path)
        assert response.status_code == 422
        assert response.json() == {"error": {"status": 422, "message": message}}
    missing = client.post("/api/ask", json={"k": 2})
    assert missing.json()["error"]["message"] == (
        "q is required: the question q must be text of 1 to 1000 characters"
    )
