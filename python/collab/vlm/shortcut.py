"""collab-vlm-tiny's decoding shortcut (MindFusion's D) at run time (no torch).

The text LLM's shortcut (models/llm) learned to continue text: on this VLM's one-to-three-word
answers it does not stop ("no" -> "nobody"). The VLM's own (collab.vlm.shortcut_train, in
models/vlm) is trained on the full VLM's answers, end-of-turn token included. Its meta says
answers "vlm" and the sha256 of the projector whose image rows it saw; it is refused for
another projector, and (CLFN header) for another text model or split point.
"""
from __future__ import annotations

from ..llm.shortcut import ShortcutProjection

__all__ = ["vlm_shortcut_matches", "load_vlm_shortcut", "find_vlm_shortcut"]


def vlm_shortcut_matches(path, projector=None) -> bool:
    """Whether the VLM shortcut at ``path`` was trained with this projector's image rows."""
    from .codec import trained_with_projector

    return trained_with_projector(path, projector)


def load_vlm_shortcut(path, *, model, split_at: int | None = None, projector=None,
                      n_threads: int = 1) -> ShortcutProjection:
    """A trained VLM shortcut, run natively, checked against the text model (digest), the split
    point and the projector; a text LLM's shortcut (no "answers": "vlm") is refused."""
    from .codec import check_vlm_net

    check_vlm_net(path, key="answers", value="vlm", what="a VLM decoding shortcut (a text LLM's?)",
                  projector=projector)
    return ShortcutProjection.load(path, model=model, split_at=split_at, n_threads=n_threads)


def find_vlm_shortcut(at: int):
    """The VLM shortcut for split point ``at`` (where the image codecs are looked up), or None."""
    from .codec import find_vlm_file
    from .shortcut_train import artifact_name

    return find_vlm_file(artifact_name(at))
