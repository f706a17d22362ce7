"""The JSON API: /api/ask, /api/search, /api/documents and /healthz. Read-only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field, JsonValue

from indexer.retrieval import MAX_K, MAX_OFFSET, MAX_QUERY_CHARS, Mode, Scope, Searcher
from server.deps import get_searcher
from server.schemas import (
    AskResponse,
    DocumentOut,
    DocumentResponse,
    DocumentsResponse,
    ErrorResponse,
    HealthResponse,
)

router = APIRouter()
SearcherDep = Annotated[Searcher, Depends(get_searcher)]

# Bounds are enforced by indexer.retrieval.validate_query (one place, one set of messages);
# these only describe them in the OpenAPI document.
QUESTION_HELP = f"The question (1 to {MAX_QUERY_CHARS} characters)."
K_HELP = f"How many passages to return (1 to {MAX_K})."
QUESTION_SCHEMA: dict[str, JsonValue] = {"minLength": 1, "maxLength": MAX_QUERY_CHARS}
K_SCHEMA: dict[str, JsonValue] = {"minimum": 1, "maximum": MAX_K}
MODE_HELP = "hybrid (dense + lexical, the default), dense or bm25."
DOC_HELP = "Search this document only (a doc id, as /api/documents lists them)."
FOLDER_HELP = "Search this folder only, subfolders included (a doc id prefix such as `notes/`)."
FORMAT_HELP = "Search documents of this format only: text, markdown, html, pdf or docx."
OFFSET_HELP = (
    f"Passages to skip, for the next page (0 to {MAX_OFFSET}); only the first page has an answer."
)
OFFSET_SCHEMA: dict[str, JsonValue] = {"minimum": 0, "maximum": MAX_OFFSET}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"description": "Bad input, said in a sentence.", "model": ErrorResponse},
    503: {"description": "The index cannot be read.", "model": ErrorResponse},
}
# The question routes also answer 404 when `doc` names no document in the index.
QUESTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "`doc` names no document in the index.", "model": ErrorResponse},
    **ERROR_RESPONSES,
}


class AskRequest(BaseModel):
    """The body of POST /api/ask."""

    q: str = Field(description=QUESTION_HELP, json_schema_extra=QUESTION_SCHEMA)
    k: int = Field(5, description=K_HELP, json_schema_extra=K_SCHEMA)
    mode: Mode = Field("hybrid", description=MODE_HELP)
    doc: str | None = Field(None, description=DOC_HELP)
    folder: str | None = Field(None, description=FOLDER_HELP)
    format: str | None = Field(None, description=FORMAT_HELP)
    offset: int = Field(0, description=OFFSET_HELP, json_schema_extra=OFFSET_SCHEMA)

    @property
    def scope(self) -> Scope:
        return Scope(self.doc, self.folder, self.format)


Question = Annotated[str, Query(description=QUESTION_HELP, json_schema_extra=QUESTION_SCHEMA)]
K = Annotated[int, Query(description=K_HELP, json_schema_extra=K_SCHEMA)]
ModeQuery = Annotated[Mode, Query(description=MODE_HELP)]
Offset = Annotated[int, Query(description=OFFSET_HELP, json_schema_extra=OFFSET_SCHEMA)]


def scope_query(
    doc: Annotated[str | None, Query(description=DOC_HELP)] = None,
    folder: Annotated[str | None, Query(description=FOLDER_HELP)] = None,
    format: Annotated[str | None, Query(description=FORMAT_HELP)] = None,
) -> Scope:
    """The filters of a question, from the query string (empty values mean no filter)."""
    return Scope(doc, folder, format)


ScopeDep = Annotated[Scope, Depends(scope_query)]


@router.get("/api/ask", tags=["questions"], responses=QUESTION_RESPONSES)
def ask_get(
    searcher: SearcherDep,
    scope: ScopeDep,
    q: Question = "",
    k: K = 5,
    mode: ModeQuery = "hybrid",
    offset: Offset = 0,
) -> AskResponse:
    """Answer a question: the best sentence, cited to its passage, and the passages."""
    return AskResponse.of(searcher.ask(q, k, mode, scope=scope, offset=offset))


@router.post("/api/ask", tags=["questions"], responses=QUESTION_RESPONSES)
def ask_post(searcher: SearcherDep, body: AskRequest) -> AskResponse:
    """Same as GET /api/ask, with the question in a JSON body `{"q": ..., "k": ...}`."""
    return AskResponse.of(
        searcher.ask(body.q, body.k, body.mode, scope=body.scope, offset=body.offset)
    )


@router.get("/api/search", tags=["questions"], responses=QUESTION_RESPONSES)
def search(
    searcher: SearcherDep,
    scope: ScopeDep,
    q: Question = "",
    k: K = 5,
    mode: ModeQuery = "hybrid",
    offset: Offset = 0,
) -> AskResponse:
    """The passages that best match a question, without choosing an answer."""
    return AskResponse.of(searcher.search(q, k, mode, scope=scope, offset=offset))


@router.get("/api/documents", tags=["documents"], responses={503: ERROR_RESPONSES[503]})
def documents(searcher: SearcherDep) -> DocumentsResponse:
    """Every indexed document: id, title, format, paragraph count and metadata."""
    return DocumentsResponse(documents=[DocumentOut.of(info) for info in searcher.documents()])


@router.get(
    "/api/documents/{doc_id:path}",
    tags=["documents"],
    responses={
        404: {"description": "No such document.", "model": ErrorResponse},
        **ERROR_RESPONSES,
    },
)
def document(searcher: SearcherDep, doc_id: str) -> DocumentResponse:
    """One document: every block (paragraphs numbered) with its section, page and span."""
    return DocumentResponse.of_view(searcher.document(doc_id))


@router.get(
    "/healthz",
    tags=["health"],
    responses={503: {"description": "What is wrong with the index.", "model": ErrorResponse}},
)
def healthz(searcher: SearcherDep) -> HealthResponse:
    """ok, and what the index holds; 503 when the index being served is gone or damaged."""
    searcher.check()
    return HealthResponse.of(searcher.stats())


def openapi_with_bounds(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, declaring `q` required on GET as well.

    In the signatures `q` defaults to "" so that a missing question gets the same message as
    an empty one, from the one validator.
    """
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
        )
        for path in ("/api/ask", "/api/search"):
            for parameter in schema["paths"][path]["get"]["parameters"]:
                if parameter["name"] == "q":
                    parameter["required"] = True
                    parameter["schema"].pop("default", None)
        app.openapi_schema = schema
    return app.openapi_schema
