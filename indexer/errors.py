"""Domain errors. The CLI and the server each turn these into user-facing errors in one place."""

from __future__ import annotations

# The end of every IndexCorrupt message: what repairs a damaged index.
REBUILD_HINT = "repair it with `paracite index <folder> --rebuild`"


class ParaciteError(Exception):
    """Base class: the message is meant for the user, one line, no traceback."""


class IndexNotFound(ParaciteError):
    """There is no index at the given path."""


class IndexCorrupt(ParaciteError):
    """The index exists but cannot be read."""


class IndexBusy(ParaciteError):
    """Another indexing run holds the index."""


class ModelMismatch(ParaciteError):
    """The index was built with another model, backend or format version."""


class ModelUnavailable(ParaciteError):
    """The configured embedding model (or reranker) cannot be loaded."""


class UnsupportedFile(ParaciteError):
    """A file cannot be indexed: unknown type, binary, empty, too large, or unreadable."""


class DocumentNotFound(ParaciteError):
    """No document with that id in the index."""


class InvalidQuery(ParaciteError):
    """The question is empty, too long, or asks for an invalid number of results."""
