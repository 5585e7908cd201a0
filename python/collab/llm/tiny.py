"""A tiny random-weight llama-architecture GGUF, for tests and smoke runs (no download).

    path = collab.llm.tiny.write_tiny_gguf("tiny.gguf", n_layer=4, seed=0)

The tokenizer is a byte-level SentencePiece vocabulary (``<unk> <s> </s>`` + 256 byte
tokens + a few words), so llama.cpp loads and tokenizes it. Weights are random; some
matrices are stored quantized (Q8_0 / Q4_0) so splitting is exercised on quantized types.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_tiny_gguf"]

_WORDS = ["▁"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["▁the", "▁a", "▁is", "▁of", "▁and", "▁to", "▁in", "▁it", "▁hello", "▁world", "▁cat", "▁dog", "▁sat",
          "▁on", "▁mat", "."]


def write_tiny_gguf(path, *, n_layer: int = 4, n_embd: int = 64, n_head: int = 4, n_head_kv: int = 2,
                    n_ff: int = 128, n_ctx: int = 256, seed: int = 0, quantized: bool = True,
                    per_layer_arrays: bool = False, tied_output: bool = False, arch: str = "llama") -> Path:
    """Write the model and return its path. per_layer_arrays stores feed_forward_length and
    head_count_kv as per-layer arrays (exercises metadata slicing)."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + _WORDS
    n_vocab = len(tokens)
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + \
        [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * len(_WORDS)
    scores = [0.0, 0.0, 0.0] + [-1000.0] * 256 + [-float(i) for i in range(len(_WORDS))]

    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("collab-tiny")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length([n_ff] * n_layer if per_layer_arrays else n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv([n_head_kv] * n_layer if per_layer_arrays else n_head_kv)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quantized else gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)

    def mat(rows, cols, scale, qtype=None):
        # numpy shape (rows, cols) = ggml ne (cols, rows); a matmul weight maps cols -> rows.
        a = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
        if quantized and qtype is not None and cols % 32 == 0:
            return gguf.quants.quantize(a, qtype), qtype
        return a, None

    def add(name, arr_q):
        arr, q = arr_q
        if q is None:
            w.add_tensor(name, arr)
        else:
            w.add_tensor(name, arr, raw_dtype=q)

    Q8, Q4 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0
    hd = n_embd // n_head
    add("token_embd.weight", mat(n_vocab, n_embd, 0.5, Q8))
    for i in range(n_layer):
        add(f"blk.{i}.attn_norm.weight", (1.0 + 0.1 * rng.standard_normal(n_embd).astype(np.float32), None))
        add(f"blk.{i}.attn_q.weight", mat(n_embd, n_embd, n_embd ** -0.5, Q8))
        add(f"blk.{i}.attn_k.weight", mat(n_head_kv * hd, n_embd, n_embd ** -0.5, Q4))
        add(f"blk.{i}.attn_v.weight", mat(n_head_kv * hd, n_embd, n_embd ** -0.5, None))
        add(f"blk.{i}.attn_output.weight", mat(n_embd, n_embd, n_embd ** -0.5, Q8))
        add(f"blk.{i}.ffn_norm.weight", (1.0 + 0.1 * rng.standard_normal(n_embd).astype(np.float32), None))
        add(f"blk.{i}.ffn_gate.weight", mat(n_ff, n_embd, n_embd ** -0.5, Q4))
        add(f"blk.{i}.ffn_up.weight", mat(n_ff, n_embd, n_embd ** -0.5, Q8))
        add(f"blk.{i}.ffn_down.weight", mat(n_embd, n_ff, n_ff ** -0.5, None))
    add("output_norm.weight", (np.ones(n_embd, np.float32), None))
    if not tied_output:
        add("output.weight", mat(n_vocab, n_embd, n_embd ** -0.5, Q8))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)
