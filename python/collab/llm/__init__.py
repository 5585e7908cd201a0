"""LLM split execution on llama.cpp (MindFusion, issue 4).

  collab.llm.split_gguf(src, out_dir, at)   head/tail GGUF parts (python only, `gguf` package)
"""
from .split import GGUFSplitError, SplitInfo, gguf_layer_count, read_split_info, split_gguf

__all__ = ["split_gguf", "GGUFSplitError", "SplitInfo", "gguf_layer_count", "read_split_info"]
