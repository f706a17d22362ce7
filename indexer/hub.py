"""Models named on the Hugging Face hub rather than by a folder: found in the local hub cache,
or fetched only when the hub can be reached.

Handed a name it cannot find, sentence-transformers asks the hub, and on a machine without
internet the hub client retries for over a minute ("Retrying in 8s [Retry 4/5]") before the
error. A model already in the hub cache is loaded from its folder without asking the network
at all; one that is not fails at once when the hub cannot be reached, saying how to get it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from indexer.errors import ModelUnavailable

# Seconds to wait for a connection to the hub before calling it unreachable.
HUB_PROBE_TIMEOUT = 3.0


def locate_model(name: str, cache_dir: Path | None = None) -> str:
    """Where to load model `name` from: a folder as it is, else `locate_hub_model`. A local
    folder is loaded with the hub switched off, so that nothing reaches for the network."""
    folder = Path(name).expanduser()
    location = str(folder) if folder.exists() else locate_hub_model(name, cache_dir)
    if Path(location).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return location


def locate_hub_model(name: str, cache_dir: Path | None = None) -> str:
    """The local folder of hub model `name` when the hub cache holds it; else `name` itself
    when the hub can be reached (the load then downloads it); else ModelUnavailable.

    The error says why, for the caller to prefix with what failed to load; `cache_dir` is
    the hub cache (default: huggingface_hub's, HF_HUB_CACHE)."""
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:  # a path, not "org/model"
        raise ModelUnavailable("there is no such folder")
    for repo_id in _repo_ids(name):
        folder = _cached_snapshot(repo_id, cache_dir)
        if folder is not None:
            return folder
    if _offline():
        raise ModelUnavailable(
            "it is not a folder and not in the Hugging Face cache, and the hub is switched "
            "off (HF_HUB_OFFLINE); " + _how_to_get(name)
        )
    if not hub_reachable():
        raise ModelUnavailable(
            "it is not a folder and not in the Hugging Face cache, and the hub "
            f"({_endpoint()}) cannot be reached from here; " + _how_to_get(name)
        )
    return name


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Whether a connection to the hub's host opens within `timeout` seconds."""
    url = urlparse(_endpoint())
    if not url.hostname:
        return False
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _repo_ids(name: str) -> list[str]:
    # sentence-transformers reads a bare name as one of its own models.
    return [name] if "/" in name else [name, f"sentence-transformers/{name}"]


def _cached_snapshot(repo_id: str, cache_dir: Path | None) -> str | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        return None


def _offline() -> bool:
    return any(
        os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on")
        for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def _how_to_get(name: str) -> str:
    return (
        "download it where the hub can be reached "
        f"(`hf download {_repo_ids(name)[-1]} --local-dir DIR`), "
        "copy DIR here and give its path instead of the name"
    )
