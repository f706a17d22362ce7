"""Fuzz the JSON API from its own OpenAPI schema (schemathesis), in process, over the seeds.

Every operation the app declares gets generated requests, valid and invalid; no answer may be
a 5xx, and every answer must match what the schema declares for it (status code, content
type, body). Bounded: few examples per operation, no shrinking, a fixed seed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode
from schemathesis.schemas import BaseSchema

from indexer.retrieval import Searcher
from indexer.settings import Settings
from server.app import create_app
from server.deps import get_searcher

EXAMPLES = 60  # per operation and mode: a few seconds in all
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed_app(seed_index: Path, searcher: Searcher) -> FastAPI:
    app = create_app(Settings(index=seed_index), searcher)
    # schemathesis calls the app without running its lifespan; hand it the open index directly.
    app.dependency_overrides[get_searcher] = lambda: searcher
    return app


@pytest.fixture(scope="module")
def api_schema(fuzzed_app: FastAPI) -> BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)


def test_the_schema_declares_the_api(api_schema: BaseSchema) -> None:
    labels = {operation.ok().label for operation in api_schema.get_all_operations()}
    assert {"GET /api/ask", "POST /api/ask", "GET /api/search", "GET /healthz"} <= labels


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_never_fails_and_answers_as_its_schema_says(
    api_schema: BaseSchema, mode: GenerationMode
) -> None:
    """Every declared operation, with data that fits its schema and data that does not."""
    checked: Counter[str] = Counter()
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: schemathesis.Case) -> None:
            checked[case.operation.label] += 1
            case.call_and_validate(checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            # No invalid request exists for an operation without parameters (GET /healthz).
            if mode is not GenerationMode.NEGATIVE:
                raise
    assert checked["GET /api/ask"] > 1 and checked["POST /api/ask"] > 1, checked
