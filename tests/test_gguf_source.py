"""``save_gguf_as_safetensors`` on a tiny Qwen2 GGUF written here from the tiny model.

The reference is the Hugging Face model the GGUF was written from: the saved model must hold its
weights, config and tokenizer, and compute its logits. The GGUF is written with gguf-py's own
writer, under llama.cpp's tensor names and metadata keys (the ones the pipeline's Qwen2.5-Coder
file carries), in F32: the tiny model's weights are bf16, so F32 holds them exactly and the bf16
model the function saves must equal them bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from thinktune.models import source as modelsource

# llama.cpp's names for a Qwen2 decoder layer's tensors (convert_hf_to_gguf.py); written by hand
# rather than taken from gguf-py's mapping, which is what transformers maps them back with.
LAYER_TENSORS = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}
TOP_TENSORS = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
               "lm_head.weight": "output.weight"}

TEXTS = [
    "def solve():\n    n = int(input())\n    print(sum(map(int, input().split())) * 12345)\n",
    "```python\nimport sys\n\tx = {'a': [1, 2]}  # naïve café, 日本語 🙂\r\n```",
    "e\u0301 then \u00e9",  # decomposed and composed: Qwen2's tokenizer normalizes to NFC
    "<|im_start|>user\nRead n<|im_end|>\n<|im_start|>assistant\n<|endoftext|>",
    "  it's   we'll\n\n\n",
]


def gguf_tensor_name(hf_name: str) -> str:
    if hf_name in TOP_TENSORS:
        return TOP_TENSORS[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)  # model.layers.N.<module>.<weight|bias>
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{LAYER_TENSORS[module]}.{kind}"


def write_qwen2_gguf(model_dir: Path, path: Path, tied: bool = False) -> Path:
    """A Qwen2 GGUF of the saved model in ``model_dir``; ``tied`` leaves ``output.weight`` out, as
    a tied model's file does. q and k are written as they are: llama.cpp permutes them for llama
    (transformers' ``LlamaTensorProcessor`` undoes it) but not for qwen2, which has no processor."""
    from safetensors.torch import load_file

    config = json.loads((model_dir / "config.json").read_text())
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"] | {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    tokens = sorted(vocab, key=vocab.get)
    assert [vocab[t] for t in tokens] == list(range(len(tokens)))
    special = {t["content"] for t in tokenizer["added_tokens"] if t["special"]}

    writer = gguf.GGUFWriter(path, "qwen2")
    writer.add_name("tiny qwen2")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges([" ".join(pair) for pair in tokenizer["model"]["merges"]])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_pad_token_id(config["pad_token_id"])
    writer.add_bos_token_id(config["pad_token_id"])  # as the Qwen2.5-Coder file: <|endoftext|>, never added
    writer.add_add_bos_token(False)
    writer.add_chat_template((model_dir / "chat_template.jinja").read_text())
    for name, tensor in load_file(model_dir / "model.safetensors").items():
        if not (tied and name == "lm_head.weight"):
            writer.add_tensor(gguf_tensor_name(name), tensor.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def reference_weights(model_dir: Path, tied: bool) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights = load_file(model_dir / "model.safetensors")
    if tied:
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
    return {name: tensor.to(torch.bfloat16) for name, tensor in weights.items()}


@pytest.fixture(scope="module", params=["untied", "tied"])
def converted(request, tiny_model_dir, tmp_path_factory):
    """(tied, the GGUF's folder, the saved folder). The pipeline's file is untied (it holds
    ``output.weight``); tied is the other shape Qwen2 GGUFs come in."""
    tied = request.param == "tied"
    folder = tmp_path_factory.mktemp(f"gguf-{request.param}")
    gguf_path = write_qwen2_gguf(tiny_model_dir, folder / "tiny.gguf", tied=tied)
    out = folder / "saved"
    modelsource.save_gguf_as_safetensors(gguf_path, out)
    return tied, gguf_path, out


def test_saved_weights_are_the_models_in_bf16(converted, tiny_model_dir):
    from safetensors.torch import load_file

    tied, _, out = converted
    saved, expected = load_file(out / "model.safetensors"), reference_weights(tiny_model_dir, tied)
    # a tied model saves lm_head once, under the embedding (save_pretrained drops the tied copy)
    assert set(saved) | ({"lm_head.weight"} if tied else set()) == set(expected)
    for name, tensor in saved.items():
        assert tensor.dtype == torch.bfloat16, name
        assert torch.equal(tensor, expected[name]), name


def test_saved_config_is_the_models(converted, tiny_model_dir):
    from transformers import AutoConfig

    tied, _, out = converted
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    saved, reference = AutoConfig.from_pretrained(out), AutoConfig.from_pretrained(tiny_model_dir)
    for key in ("model_type", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "hidden_size",
                "intermediate_size", "vocab_size", "max_position_embeddings", "eos_token_id", "pad_token_id"):
        assert getattr(saved, key) == getattr(reference, key), key
    assert saved.rope_parameters["rope_theta"] == reference.rope_parameters["rope_theta"]
    assert saved.tie_word_embeddings == tied
    # GGUF metadata holds the epsilon as a float32: 1e-6 comes back as 9.99999997e-07
    assert saved.rms_norm_eps == float(np.float32(reference.rms_norm_eps))


def test_saved_tokenizer_encodes_as_the_models(converted, tiny_model_dir):
    """As the later stages load it (``AutoTokenizer`` on the folder): same ids for code, unicode,
    the chat special tokens; same special tokens, chat template and prompt."""
    from transformers import AutoTokenizer

    _, _, out = converted
    saved, reference = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(tiny_model_dir)
    assert saved.get_vocab() == reference.get_vocab()
    for text in TEXTS:
        assert saved.encode(text) == reference.encode(text), text
    assert saved.convert_ids_to_tokens(saved.encode(TEXTS[3]))[:1] == ["<|im_start|>"]  # whole, not in pieces
    assert (saved.eos_token, saved.pad_token) == (reference.eos_token, reference.pad_token) == ("<|im_end|>",
                                                                                            "<|endoftext|>")
    assert saved.chat_template == reference.chat_template
    chat = [{"role": "user", "content": TEXTS[0]}]
    assert (saved.apply_chat_template(chat, add_generation_prompt=True)
            == reference.apply_chat_template(chat, add_generation_prompt=True))


def test_saved_model_computes_the_models_logits(converted, tiny_model_dir):
    """Both in bf16: the same weights and the same code give the same bits. The one difference
    in the config is the epsilon's float32 rounding, so the reference gets that epsilon too
    (its effect alone is below fp32's resolution of the variance it is added to, but exact
    equality is the claim that can be checked on every CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tied, _, out = converted
    saved = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16,
                                                     rms_norm_eps=saved.config.rms_norm_eps,
                                                     tie_word_embeddings=tied)
    if tied:
        reference.lm_head.weight = reference.model.embed_tokens.weight
    ids = torch.tensor([AutoTokenizer.from_pretrained(tiny_model_dir).encode(TEXTS[0] + TEXTS[3])])
    with torch.no_grad():
        logits, expected = saved(ids).logits, reference(ids).logits
    assert logits.dtype == torch.bfloat16 and logits.shape == (1, ids.shape[1], saved.config.vocab_size)
    assert torch.equal(logits, expected)


def test_the_file_is_parsed_once(tiny_model_dir, tmp_path, monkeypatch):
    """Without ``_gguf_parsed_once`` transformers 5.24 constructs ``gguf.GGUFReader`` 3 times for
    one conversion, each parsing the whole vocabulary: for the config (``AutoConfig``), for the
    weights (the GGUF quantizer's legacy loader, which qwen2 goes through) and for the tokenizer's
    config (``AutoTokenizer``; the vocabulary itself it reads with its own reader)."""
    constructed = []

    class CountingReader(gguf.GGUFReader):
        def __init__(self, *args, **kwargs):
            constructed.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", CountingReader)
    gguf_path = write_qwen2_gguf(tiny_model_dir, tmp_path / "tiny.gguf")
    modelsource.save_gguf_as_safetensors(gguf_path, tmp_path / "saved")
    assert len(constructed) == 1
    assert gguf.GGUFReader is CountingReader  # given back after the conversion


def test_the_name_table_is_built_once_and_the_metadata_read_once(tiny_model_dir, tmp_path, monkeypatch):
    """transformers 5.24 builds gguf's name table once per module of the model and reads the
    metadata three times (config, weights, tokenizer's config); the conversion builds it once and
    reads the metadata alone once (the weights' read parses it again with the tensors)."""
    import functools
    import inspect

    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    tables, reads = [], []
    real_table, real_read = gguf.get_tensor_name_map, gguf_utils.load_gguf_checkpoint

    def counting_table(*args):
        tables.append(args)
        return real_table(*args)

    @functools.wraps(real_read)  # the same signature, which the conversion reads
    def counting_read(*args, **kwargs):
        call = inspect.signature(real_read).bind(*args, **kwargs)
        call.apply_defaults()
        reads.append(call.arguments["return_tensors"])
        return real_read(*args, **kwargs)

    monkeypatch.setattr(gguf, "get_tensor_name_map", counting_table)
    monkeypatch.setattr(gguf_utils, "load_gguf_checkpoint", counting_read)
    gguf_path = write_qwen2_gguf(tiny_model_dir, tmp_path / "tiny.gguf")
    modelsource.save_gguf_as_safetensors(gguf_path, tmp_path / "saved")
    assert len(tables) == 1
    assert sorted(reads) == [False, True]
    assert (gguf.get_tensor_name_map, gguf_utils.load_gguf_checkpoint) == (counting_table, counting_read)  # given back


def metadata_only_gguf(path: Path, name: str) -> Path:
    writer = gguf.GGUFWriter(path, "qwen2")
    writer.add_name(name)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    return path


def test_readers_are_shared_per_file_and_the_reader_given_back(tmp_path, monkeypatch):
    original = gguf.GGUFReader
    first, second = metadata_only_gguf(tmp_path / "a.gguf", "a"), metadata_only_gguf(tmp_path / "b.gguf", "b")
    (tmp_path / "link.gguf").symlink_to(first)
    monkeypatch.chdir(tmp_path)
    with modelsource._gguf_parsed_once():
        reader = gguf.GGUFReader(first)
        # the same file however it is named: str or Path, relative, through a link
        assert all(gguf.GGUFReader(path) is reader for path in (str(first), Path("a.gguf"), "link.gguf"))
        other = gguf.GGUFReader(second)
        assert other is not reader
        assert [r.fields["general.name"].contents() for r in (reader, other)] == ["a", "b"]
    assert gguf.GGUFReader is original

    with pytest.raises(RuntimeError, match="inside"), modelsource._gguf_parsed_once():
        assert gguf.GGUFReader is not original
        raise RuntimeError("inside the block")
    assert gguf.GGUFReader is original


def test_the_parse_reads_a_plain_view_and_leaves_numpy_alone(tmp_path):
    """The shared reader parses through a plain ndarray view of the file's mapping (no memmap
    slices), and only gguf's own name for numpy is swapped, only while it parses."""
    import numpy

    path = metadata_only_gguf(tmp_path / "a.gguf", "a")
    memmap = numpy.memmap
    with modelsource._gguf_parsed_once():
        reader = gguf.GGUFReader(path)
        assert numpy.memmap is memmap and gguf.gguf_reader.np is numpy
    assert type(reader.data) is numpy.ndarray and isinstance(reader.data.base, numpy.memmap)
    assert type(gguf.GGUFReader(path).data) is numpy.memmap  # outside the block: gguf as it comes
