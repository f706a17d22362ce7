"""The JSON the API answers with, as pydantic models: one schema for the API (and so its
OpenAPI document) and for `--json` on the command line."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, JsonValue

from indexer.models import Answer, AskResult, DocumentInfo, DocumentView, Hit, IndexStats
from server.views import answer_url, doc_url, hit_url


class ShortAnswerOut(BaseModel):
    """The name, date, number, amount or place inside the answer sentence."""

    text: str
    start: int = Field(description="Start of the short answer in the document's source.")
    end: int = Field(description="End of the short answer in the document's source.")


class AnswerOut(BaseModel):
    """The sentence that answers, cited to its passage."""

    text: str
    passage: int = Field(description="1-based rank of the cited passage in `passages`.")
    doc_id: str
    title: str
    paragraph: int
    char_start: int = Field(description="Start of the sentence in the document's source.")
    char_end: int
    score: float
    confidence: float = Field(
        ge=0,
        le=1,
        description="How likely the sentence is to answer (0..1): the answerability model's "
        "probability. Below the server's minimum there is no answer at all.",
    )
    short: ShortAnswerOut | None = Field(
        description="For a question asking for a name, date, number, amount or place: that "
        "span of the sentence (`source[start:end] == text`); null otherwise, or when the "
        "sentence holds none."
    )
    url: str = Field(description="The document page, scrolled to the paragraph, sentence marked.")


class PassageOut(BaseModel):
    """A passage that matches the question, with the sentence in it that answers best."""

    rank: int
    score: float
    doc_id: str
    title: str
    section: str | None
    paragraph: int
    page: int | None
    text: str
    char_start: int = Field(description="Start of the passage in the document's source.")
    char_end: int
    answer_start: int | None = Field(description="The answering sentence, inside `text`.")
    answer_end: int | None
    cited: bool = Field(
        description="A source: it holds the answer or a sentence close enough to be one. "
        "The others are related passages."
    )
    url: str

    @classmethod
    def of(cls, hit: Hit, answer: Answer | None = None) -> PassageOut:
        return cls(**hit.to_dict(), url=hit_url(hit, answer))


class AskResponse(BaseModel):
    """The answer of /api/ask (or null, with the reason) and the passages; /api/search too."""

    query: str
    answer: AnswerOut | None
    no_answer_reason: str | None = Field(
        description="Why `answer` is null: nothing in the documents is about the question, "
        "or they discuss its subject without answering it."
    )
    passages: list[PassageOut]
    took_ms: float

    @classmethod
    def of(cls, result: AskResult) -> AskResponse:
        answer = result.answer
        return cls(
            query=result.query,
            answer=AnswerOut(**answer.to_dict(), url=answer_url(answer))
            if answer is not None
            else None,
            no_answer_reason=result.no_answer_reason,
            passages=[PassageOut.of(hit, answer) for hit in result.hits],
            took_ms=round(result.took_ms, 2),
        )


class DocumentOut(BaseModel):
    """A document of the collection."""

    doc_id: str
    title: str
    format: str
    paragraphs: int
    metadata: dict[str, JsonValue]
    url: str

    @classmethod
    def of(cls, info: DocumentInfo) -> DocumentOut:
        return cls(**info.to_dict(), url=doc_url(info.doc_id))


class DocumentsResponse(BaseModel):
    documents: list[DocumentOut]


class BlockOut(BaseModel):
    """A heading (`paragraph` null) or a numbered paragraph of a document, in reading order."""

    kind: Literal["paragraph", "heading"]
    paragraph: int | None
    section: str | None
    page: int | None
    text: str
    char_start: int
    char_end: int
    url: str | None = Field(description="The paragraph's anchor on the document page.")


class DocumentResponse(DocumentOut):
    """A document in full: its blocks, and `source`, the text every span points into."""

    blocks: list[BlockOut]
    source: str

    @classmethod
    def of_view(cls, view: DocumentView) -> DocumentResponse:
        doc_id = view.info.doc_id
        blocks = [
            BlockOut(
                **block.to_dict(),
                url=doc_url(doc_id, block.number) if block.number is not None else None,
            )
            for block in view.blocks
        ]
        return cls(**view.info.to_dict(), url=doc_url(doc_id), blocks=blocks, source=view.source)


class HealthResponse(BaseModel):
    """ok, and what the index being served holds."""

    status: Literal["ok"]
    model: str
    backend: str
    dimension: int
    documents: int
    passages: int
    sentences: int
    sentence_vectors: str
    passage_vectors: str
    device: str
    built_at: str
    format_version: int
    chunking: dict[str, JsonValue]

    @classmethod
    def of(cls, stats: IndexStats) -> HealthResponse:
        data = stats.to_dict()
        data.pop("path", None)  # where the index sits on disk is nobody else's business
        return cls(status="ok", **data)


class ErrorBody(BaseModel):
    status: int
    message: str


class ErrorResponse(BaseModel):
    """Every error under /api and at /healthz."""

    error: ErrorBody
