"""Reaching the sources params.yaml names, with one-line errors when they cannot be reached.

A hub download that fails for want of a network, or for a name the hub does not have, ends
the stage with one line (the key, the source, the reason, the fix) instead of the libraries'
chained traceback; :func:`local_problems` lists the local files a setting needs that are not
there, so ``check_params`` can report them before any stage runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from thinktune.errors import InputError, SourceError

# Exception class names (anywhere in the chain) that mean "the network or the hub is not there".
_UNREACHABLE = {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectError", "ConnectTimeout", "ReadTimeout",
                "ConnectionError", "NewConnectionError", "MaxRetryError", "gaierror", "TimeoutError",
                "ConnectionRefusedError", "ProxyError", "SSLError"}
# ... and "the hub is there but has no such thing".
_MISSING = {"RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError", "RemoteEntryNotFoundError"}
_GATED = {"GatedRepoError"}


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
        names = {type(e).__name__ for e in chain}
        if names & _GATED:
            raise SourceError(f"{key}: {what} is gated on the hub; accept its licence on huggingface.co and log in "
                              "(`hf auth login`), or " + instead) from exc
        if names & _MISSING:
            raise SourceError(f"{key}: the hub has no {what} ({_reason(chain)}); check the name and revision, "
                              "or " + instead) from exc
        if names & _UNREACHABLE:
            raise SourceError(f"{key}: cannot reach the Hugging Face hub for {what} ({_reason(chain)}); run where "
                              "huggingface.co (or HF_ENDPOINT) is reachable, or " + instead) from exc
        raise


# The keys a missing local input may come from (a rejected `-S` sets them back).
RELATED_KEYS = {
    "model.local_path": ["model.source", "model.local_path"],
    "data.local_dir": ["data.source", "data.local_dir", "data.deep_file", "data.diverse_file"],
    "data.sample_dir": ["data.source", "data.sample_dir"],
    "eval.local_dir": ["eval.source", "eval.local_dir", "eval.lcb_release", "eval.benchmark"],
    "eval.sample_file": ["eval.source", "eval.sample_file", "eval.benchmark"],
}


def local_problems(params) -> list[str]:
    """One line per local input a setting names that is not there (empty: all present), each
    starting with its key (a key of :data:`RELATED_KEYS`).

    Checked by ``check_params`` before any stage runs, and again by the stage that reads it."""
    problems = []
    model, data, eval_ = params.model, params.data, params.eval
    if model.source == "local" and not (Path(model.local_path) / "config.json").is_file():
        problems.append(f"model.local_path: {model.local_path} holds no config.json; point it at a folder with a "
                        "saved model (save_pretrained)")
    if data.source == "local":
        for key, name in (("data.deep_file", data.deep_file), ("data.diverse_file", data.diverse_file)):
            path = Path(data.local_dir) / name
            if not path.is_file():
                problems.append(f"data.local_dir: {path} ({key}) not found; copy the file there or set "
                                "data.local_dir to the folder holding it")
    if data.source == "sample":
        for strategy in ("deep", "diverse"):
            path = Path(data.sample_dir) / f"codegen_{strategy}.jsonl"
            if not path.is_file():
                problems.append(f"data.sample_dir: {path} not found; the committed value is data/sample")
    if eval_.source == "local" and eval_.benchmark == "livecodebench":
        from thinktune.livecodebench import RELEASE_FILES

        files = RELEASE_FILES.get(eval_.lcb_release, [])
        missing = [name for name in files if not (Path(eval_.local_dir) / name).is_file()]
        if missing:
            problems.append(f"eval.local_dir: {eval_.local_dir} lacks {missing} of LiveCodeBench {eval_.lcb_release}; "
                            "copy them there from the hub's livecodebench/code_generation_lite")
    if eval_.source == "sample" and eval_.benchmark == "livecodebench" and not Path(eval_.sample_file).is_file():
        problems.append(f"eval.sample_file: {eval_.sample_file} not found; the committed value is "
                        "data/sample/livecodebench_sample.jsonl")
    return problems
