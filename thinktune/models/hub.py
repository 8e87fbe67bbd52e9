"""Reaching the sources params.yaml names, with one-line errors when they cannot be reached.

A hub download that fails for want of a network, or for a name the hub does not have, ends
the stage with one line (the key, the source, the reason, the fix) instead of the libraries'
chained traceback. (The local files a setting needs are checked by ``thinktune.config.local_inputs``.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from thinktune.errors import InputError, SourceError


def _kind(exc: BaseException) -> str | None:
    """What one exception of a failed hub call says: "gated", "missing" (the hub is there but has
    no such repository, revision or file), "unreachable" (no network, no hub, or offline mode), or
    None. By class, as huggingface_hub and Python define them; the HTTP client's own errors are
    recognised by the OSError they are raised from."""
    import socket
    import ssl

    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):  # before its base class RepositoryNotFoundError
        return "gated"
    # LocalEntryNotFoundError (not in the cache, and the hub not asked or not answering) is an
    # EntryNotFoundError too: it means unreachable, so it is tested first.
    if isinstance(exc, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled, ConnectionError, TimeoutError,
                        socket.gaierror, ssl.SSLError)):
        return "unreachable"
    if isinstance(exc, (errors.RepositoryNotFoundError, errors.RevisionNotFoundError, errors.EntryNotFoundError,
                        errors.RemoteEntryNotFoundError)):
        return "missing"
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _reason(chain: list[BaseException]) -> str:
    """The innermost message, on one line (e.g. "[Errno -2] Name or service not known")."""
    text = " ".join(str(chain[-1]).split()) or type(chain[-1]).__name__
    return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def from_hub(key: str, what: str, instead: str) -> Iterator[None]:
    """Turn a failed hub download of ``what`` (set by ``key``) into a :class:`SourceError`;
    ``instead`` says which setting works without the hub."""
    try:
        yield
    except InputError:
        raise
    except Exception as exc:
        chain = _chain(exc)
        kinds = {_kind(e) for e in chain}
        if "gated" in kinds:
            raise SourceError(f"{key}: {what} is gated on the hub; accept its licence on huggingface.co and log in "
                              "(`hf auth login`), or " + instead) from exc
        if "missing" in kinds:
            raise SourceError(f"{key}: the hub has no {what} ({_reason(chain)}); check the name and revision, "
                              "or " + instead) from exc
        if "unreachable" in kinds:
            raise SourceError(f"{key}: cannot reach the Hugging Face hub for {what} ({_reason(chain)}); run where "
                              "huggingface.co (or HF_ENDPOINT) is reachable, or " + instead) from exc
        raise
