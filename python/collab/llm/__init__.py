"""LLM split execution on llama.cpp (MindFusion; issue 4).

  split_gguf(src, out_dir, at)        head/tail GGUF parts (python only, `gguf` package)
  Model / Session (runtime)           native head / tail / full sessions (llama.cpp)
  Device / LlmTask                    device side and server TaskHandler, five decode modes
  protocol.RowPolicy                  hidden-row compression by token range (SLICER codec)
  shortcut.ShortcutProjection         decoding shortcut (trained projection, run natively)
  fcnet.FcRowPolicy / load_net        trained FC codec for the early rows; CLFN nets via ggml
  artifact.FcNet                      the CLFN file of trained nets (numpy reader/writer)
  train.*                             torch mirror + training recipes (training only)
"""
from .split import GGUFSplitError, SplitInfo, gguf_layer_count, read_split_info, split_gguf

__all__ = ["split_gguf", "GGUFSplitError", "SplitInfo", "gguf_layer_count", "read_split_info",
           "Model", "Session", "available", "Device", "Generation", "LlmTask", "MODES", "RowPolicy"]


def __getattr__(name):  # the native parts load lazily: split_gguf works without llama.cpp
    if name in ("Model", "Session", "available"):
        from . import runtime

        return getattr(runtime, name)
    if name in ("Device", "Generation"):
        from . import device

        return getattr(device, name)
    if name in ("LlmTask", "MODES"):
        from . import server

        return getattr(server, name)
    if name == "RowPolicy":
        from .protocol import RowPolicy

        return RowPolicy
    raise AttributeError(name)
