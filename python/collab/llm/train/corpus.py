"""Offline text for the shortcut's token -> row statistics (no download, nothing held out).

The decoding shortcut maps a token to the row the head would produce for it; the rows of the
full model's prefill over ordinary text are examples of that map at a fraction of the cost of
greedy generation. Sources, all on a Debian machine with collab's test set-up: docstrings of
the Python standard library, the long descriptions of installed Python packages (dist-info
METADATA), lm-eval's task READMEs (the MMLU task folder left out: its exemplars are prompts,
some of them held out), Debian package READMEs and plain-text docs. Each document is cut into
chunks and wrapped in SmolLM2's chat template, part as the user turn and the rest as the
assistant turn, so the rows see the same kind of context as an answer being decoded.
"""
from __future__ import annotations

import ast
import gzip
import hashlib
import importlib.util
import sys
from pathlib import Path

from .prompts import SYSTEM

__all__ = ["documents", "chunks", "chat_chunk", "SYSTEM_PREFIX"]

SYSTEM_PREFIX = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
_ASK = ["Continue this text.", "What comes next?", "Please go on.", "Explain the rest.", "Keep writing."]


def _read(p: Path, limit: int = 200_000) -> str:
    try:
        raw = p.read_bytes()[: 4 * limit]
        if p.suffix == ".gz":
            raw = gzip.decompress(p.read_bytes())[: 4 * limit]
        return raw.decode("utf-8", "ignore")[:limit]
    except (OSError, EOFError, gzip.BadGzipFile):
        return ""


def _docstrings(p: Path) -> str:
    try:
        tree = ast.parse(_read(p))
    except (SyntaxError, ValueError):
        return ""
    out = []
    for n in ast.walk(tree):
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            d = ast.get_docstring(n)
            if d and len(d) > 200:
                out.append(d)
    return "\n\n".join(out)


def _stdlib() -> list[Path]:
    base = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return sorted(p for p in base.rglob("*.py") if "test" not in p.parts and "site-packages" not in p.parts)


def documents(max_docs: int = 0):
    """Yield (name, text) in a fixed order (the shards depend on it)."""
    n = 0

    def emit(name, text):
        nonlocal n
        text = text.strip()
        if len(text) < 400:
            return None
        n += 1
        return name, text

    srcs = []
    site = [Path(p) for p in sys.path if p.endswith("site-packages")]
    for s in site:
        srcs += [("meta", p) for p in sorted(s.glob("*.dist-info/METADATA"))]
    spec = importlib.util.find_spec("lm_eval")
    if spec and spec.submodule_search_locations:
        t = Path(spec.submodule_search_locations[0]) / "tasks"
        srcs += [("lmeval", p) for p in sorted(t.rglob("*.md")) if "mmlu" not in str(p.relative_to(t)).lower()]
    srcs += [("stdlib", p) for p in _stdlib()]
    doc = Path("/usr/share/doc")
    if doc.is_dir():
        srcs += [("debian", p) for p in sorted(doc.rglob("*"))
                 if p.is_file() and (p.name.lower().startswith("readme") or p.suffix in (".txt", ".rst", ".md"))
                 and "changelog" not in p.name.lower()]
    for kind, p in srcs:
        text = _docstrings(p) if kind == "stdlib" else _read(p)
        r = emit(f"{kind}:{p}", text)
        if r:
            yield r
            if max_docs and n >= max_docs:
                return


def chunks(text: str, size: int = 1400):
    """Paragraph-aligned pieces of about ``size`` characters."""
    cur = ""
    for para in text.split("\n\n"):
        if len(cur) + len(para) > size and len(cur) > 300:
            yield cur
            cur = ""
        cur += para[: 2 * size] + "\n\n"
    if len(cur) > 300:
        yield cur


def chat_chunk(name: str, chunk: str) -> tuple[str, int]:
    """Chat text (user asks with the first part, the assistant 'answers' with the rest) and the
    character offset where the non-system part starts (rows before it are the same for every
    chunk and are left out of the statistics)."""
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:2], "little")
    cut = max(80, len(chunk) // (3 + h % 3))
    cut = chunk.rfind(" ", 0, cut) + 1 or cut
    text = f"{SYSTEM_PREFIX}{chunk[:cut].strip()}\n{_ASK[h % len(_ASK)]}<|im_end|>\n<|im_start|>assistant\n{chunk[cut:].strip()}"
    return text, len(SYSTEM_PREFIX)
