"""GGUF files for llama.cpp (F16 and Q8_0), written with the `gguf` package, and their check.

Families: llama, qwen2 and gpt2 (every family engine/models.py builds). What we do is
what llama.cpp's convert_hf_to_gguf.py does for these architectures:
  - tensor names from gguf's TensorNameMap (HF name -> blk.N.attn_q ...);
  - llama: q and k rows permuted to llama.cpp's rotary layout (transformers' GGUF
    loader permutes them back); qwen2 keeps HF's layout (NEOX rope);
  - gpt2: HF's Conv1D weights (in, out) transposed to (out, in); output.weight written
    (llama.cpp's gpt2 asks for it); llama/qwen2 with tied embeddings write no
    output.weight (llama.cpp and transformers then tie it to token_embd);
  - 1-D tensors (norms, biases) stay F32; Q8_0 needs rows in blocks of 32 values, a
    tensor whose rows are not falls back to F16 (as llama.cpp's converter does).
Tokenizer: byte-level BPE only (our `bpe`, `gpt2`, and hub tokenizers of that kind with
GPT-2's split); its vocabulary, merges and eos go in as `tokenizer.ggml.*` (model "gpt2",
pre "gpt-2"). Anything else raises GGUFError naming what cannot be expressed
(docs/export.md lists it).

`check_gguf` proves a file: transformers' GGUF loader (`from_pretrained(dir,
gguf_file=...)`, needs the `gguf` package) reads it back, and its logits on 16 tokens
are compared with the model's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

QTYPES = ("f16", "q8_0")
FAMILIES = {"llama": "llama", "qwen2": "qwen2", "gpt2": "gpt2"}  # transformers model_type -> GGUF architecture


class GGUFError(ValueError):
    """The model or tokenizer has something GGUF (or llama.cpp) cannot express."""


def _gguf():
    try:
        import gguf
    except ImportError as e:
        raise ImportError("GGUF export needs the gguf package: pip install gguf") from e
    return gguf


def gguf_path(folder, qtype: str) -> Path:
    folder = Path(folder)
    return folder / f"{folder.name if folder.name != 'model' else folder.parent.name}-{qtype}.gguf"


def write_gguf(folder, qtype: str = "f16", model=None, tokenizer=None, out: Path | None = None) -> Path:
    """The GGUF file of the exported model in `folder` (or of `model` and `tokenizer`
    given), `qtype` "f16" or "q8_0". -> its path (default: FOLDER/RUN-QTYPE.gguf)."""
    if qtype not in QTYPES:
        raise GGUFError(f"gguf: type {qtype!r} is not one of {', '.join(QTYPES)}")
    if model is None or tokenizer is None:
        from transformers import AutoModelForCausalLM

        import utils.training.engine.nanogpt  # noqa: F401  (registers "nanogpt", so its folder loads to be refused)
        from utils.training.export.run_model import load_export_tokenizer

        model = model or AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = tokenizer or load_export_tokenizer(folder)
    config = model.config
    if config.model_type == "nanogpt":
        raise GGUFError("gguf: model family 'nanogpt' (ours) cannot be expressed in GGUF: llama.cpp has no "
                        "architecture with its RMSNorm without gains or its options (qk_norm, relu2_mlp, "
                        "logit_softcap, value_embeds, unet_skips); use the export folder (save_pretrained) "
                        "or train model_family='llama' for a GGUF file")
    gguf = _gguf()
    arch = FAMILIES.get(config.model_type)
    if arch is None:
        raise GGUFError(f"gguf: model type {config.model_type!r} is not one we write ({', '.join(FAMILIES)})")
    _check_expressible(config)
    path = Path(out) if out else gguf_path(folder, qtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    _write_metadata(writer, gguf, config, arch, qtype, Path(folder).parent.name if Path(folder).name == "model"
                    else Path(folder).name)
    _write_tokenizer(writer, gguf, tokenizer, config.vocab_size)
    for name, array in _tensors(model, arch, gguf):
        _add_tensor(writer, gguf, name, array, qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _check_expressible(config) -> None:
    """Options GGUF's llama/qwen2/gpt2 cannot carry: refuse rather than write a file that
    runs differently."""
    problems = []
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":  # 5.x keeps rope_theta here too
        problems.append(f"rope scaling {rope!r}")
    if getattr(config, "attention_bias", False) and config.model_type == "llama":
        problems.append("attention_bias=True on llama")
    if getattr(config, "mlp_bias", False):
        problems.append("mlp_bias=True")
    if config.model_type == "llama" and getattr(config, "head_dim", None) not in (None, config.hidden_size //
                                                                                  config.num_attention_heads):
        problems.append(f"head_dim {config.head_dim} != hidden_size / heads")
    act = getattr(config, "hidden_act", None) or getattr(config, "activation_function", None)
    if act not in (None, "silu", "gelu_new", "gelu"):
        problems.append(f"activation {act!r}")
    if problems:
        raise GGUFError("gguf: cannot be expressed in GGUF: " + "; ".join(problems))


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0)


def _write_metadata(writer, gguf, config, arch: str, qtype: str, name: str) -> None:
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if qtype == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)
    if arch == "gpt2":
        writer.add_context_length(config.n_positions)
        writer.add_embedding_length(config.n_embd)
        writer.add_feed_forward_length(config.n_inner or 4 * config.n_embd)
        writer.add_block_count(config.n_layer)
        writer.add_head_count(config.n_head)
        writer.add_layer_norm_eps(config.layer_norm_epsilon)
        return
    head_dim = config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)


def _write_tokenizer(writer, gguf, tokenizer, vocab_size: int) -> None:
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    model, pre = backend.get("model", {}), backend.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or pre.get("type") != "ByteLevel" or not pre.get("use_regex", True):
        raise GGUFError(f"gguf: tokenizer {getattr(tokenizer, 'name_or_path', '')!r} is not byte-level BPE with "
                        f"GPT-2's split (model {model.get('type')}, pre-tokenizer {pre.get('type')}); llama.cpp's "
                        "'gpt2' tokenizer cannot run it")
    vocab = {**model["vocab"], **{t["content"]: t["id"] for t in backend.get("added_tokens", [])}}
    if len(vocab) > vocab_size:
        raise GGUFError(f"gguf: the tokenizer has {len(vocab)} tokens, the model only {vocab_size} embeddings")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [gguf.TokenType.UNUSED] * vocab_size
    for token, index in vocab.items():
        tokens[index], types[index] = token, gguf.TokenType.NORMAL
    for added in backend.get("added_tokens", []):
        if added.get("special"):
            types[added["id"]] = gguf.TokenType.CONTROL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    eos = tokenizer.eos_token_id
    if eos is not None:
        writer.add_eos_token_id(eos)
        writer.add_bos_token_id(tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos)
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)  # our documents are separated by eos, never opened by bos


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half q/k rows -> llama.cpp's interleaved pairs (convert_hf_to_gguf's permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensors(model, arch: str, gguf):
    config = model.config
    n_layer = config.n_layer if arch == "gpt2" else config.num_hidden_layers
    names = gguf.get_tensor_name_map(next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), n_layer)
    state = model.state_dict()
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in state.items():
        base, _, suffix = hf_name.rpartition(".")
        if arch == "gpt2" and (base.endswith(".attn") and suffix in ("bias", "masked_bias")):
            continue  # causal-mask buffers of old transformers, not weights
        if hf_name == "lm_head.weight" and tied and arch != "gpt2":
            continue  # tied: llama.cpp and transformers take token_embd
        name = names.get_name(base)
        if name is None:
            raise GGUFError(f"gguf: no GGUF name for tensor {hf_name!r} of {arch}")
        data = tensor.detach().float().cpu().numpy()
        if arch == "llama" and name.endswith(".attn_q"):
            data = _permute(data, config.num_attention_heads)
        elif arch == "llama" and name.endswith(".attn_k"):
            data = _permute(data, config.num_key_value_heads or config.num_attention_heads)
        if arch == "gpt2" and suffix == "weight" and base.endswith(("attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                                     "mlp.c_proj")):
            data = data.T  # Conv1D (in, out) -> (out, in)
        yield f"{name}.{suffix}", np.ascontiguousarray(data)
    if arch == "gpt2" and "lm_head.weight" not in state:  # llama.cpp's gpt2 wants output.weight, tied or not
        yield "output.weight", state["transformer.wte.weight"].detach().float().cpu().numpy()


def _add_tensor(writer, gguf, name: str, data: np.ndarray, qtype: str) -> None:
    if data.ndim <= 1:
        writer.add_tensor(name, data.astype(np.float32))
        return
    if qtype == "q8_0":
        try:
            q = gguf.quants.quantize(data.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
        except gguf.quants.QuantError:
            q = None  # rows not in blocks of 32: F16, as llama.cpp's converter does
        if q is not None:
            writer.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            return
    writer.add_tensor(name, data.astype(np.float16))


def gguf_config(path):
    """transformers' config for the GGUF file at `path`. Its GGUF mapping reads gpt2's
    context_length into `n_ctx`, not `n_positions` (the learned position table's size),
    so a gpt2 whose context is not 1024 would not load: the context is set here."""
    from transformers import AutoConfig

    path = Path(path)
    config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    if config.model_type == "gpt2":
        reader = _gguf().GGUFReader(str(path))
        field = reader.fields["gpt2.context_length"]
        config.n_positions = int(field.parts[field.data[0]][0])
    return config


@torch.no_grad()
def check_gguf(path, model, tokenizer, text: str = "", n_tokens: int = 16) -> dict:
    """Load `path` with transformers' GGUF loader and compare with `model` on `n_tokens`
    tokens of `text` (default: the first tokens of the vocabulary's order, any ids work).
    -> {"max_abs_diff", "same_argmax", "same_tokens", "size_bytes"}."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    config = gguf_config(path)
    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, config=config,
                                                  dtype=torch.float32).eval()
    ids = tokenizer(text, return_tensors="pt")["input_ids"][:, :n_tokens] if text else None
    if ids is None or ids.size(1) < n_tokens:
        ids = torch.arange(n_tokens).unsqueeze(0) % model.config.vocab_size
    model.eval()
    device = next(model.parameters()).device
    ours, theirs = model(ids.to(device)).logits.float().cpu(), loaded(ids).logits
    gguf_tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    sample = text or "Cholera due to Vibrio cholerae 01, biovar cholerae"
    return {"max_abs_diff": float((ours - theirs).abs().max()),
            "same_argmax": bool(torch.equal(ours.argmax(-1), theirs.argmax(-1))),
            "same_tokens": gguf_tok(sample)["input_ids"] == tokenizer(sample)["input_ids"],
            "size_bytes": path.stat().st_size}
