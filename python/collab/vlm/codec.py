"""The trained FC codec for collab-vlm-tiny's image rows at run time (no torch).

    codec = load_image_codec(path, model=head_gguf, split_at=15)      # device and server
    pol = image_row_policy(codec, before, after, dtype="f16")         # Eq. 1: image rows coded
    g = dev.ask(img, q, client=client, policy=pol)                    # payload "CLFC"

Eq. 1's beta is the image rows: the text before them (chat template, "<img>") and after them
("</img>", the question, the assistant prefix) travel exact (f32). The server (VlmTask:
collab.llm's "llm" task whose FC decoders are the image codecs) decodes them before the tail.

An image codec is a CLFN codec (collab.llm.artifact) trained by collab.vlm.codec_train; its
meta says rows "image" and the sha256 of the projector that made the image rows. It is
refused for another text model or split point (the CLFN header), for another projector, and
an LLM text codec (no "rows": "image") is refused as an image codec.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InvalidArgument
from ..llm.artifact import ArtifactError, FcNet
from ..llm.fcnet import FcCodecs, FcRowPolicy, load_net
from ..llm.server import LlmTask
from .models import projector_path

__all__ = ["trained_with_projector", "image_codec_matches", "check_vlm_net", "load_image_codec", "find_image_codec", "find_vlm_file", "image_row_policy", "VlmTask",
           "IMAGE_CODEC_ENV"]

IMAGE_CODEC_ENV = "COLLAB_VLM_CODECS"


def _projector_digest(projector) -> str:
    from .codec_train import projector_digest

    return projector_digest(projector or projector_path())


def trained_with_projector(path, projector=None) -> bool:
    """Whether the VLM net at ``path`` (an image codec or the VLM's shortcut) was trained on the
    image rows of this projector (the shipped nets belong to the shipped projector; another
    projector makes other rows)."""
    return FcNet.load(path).meta.get("projector_sha256") == _projector_digest(projector)


image_codec_matches = trained_with_projector


def check_vlm_net(path, *, key: str, value: str, what: str, projector=None) -> None:
    """A VLM net's meta: ``key`` = ``value`` (what kind of net it is) and the projector's digest;
    ArtifactError naming ``what`` otherwise. The CLFN header (model, split) is the loader's."""
    meta = FcNet.load(path).meta
    if meta.get(key) != value:
        raise ArtifactError(f"{path} is not {what} (meta {key}={meta.get(key)!r})")
    if meta.get("projector_sha256") != _projector_digest(projector):
        raise ArtifactError(f"{path} was trained on the image rows of another projector")


def load_image_codec(path, *, model, split_at: int | None = None, projector=None, n_threads: int = 1):
    """A NativeNet (kind codec) for image rows, checked against the text model (digest), the
    split point and the projector the image rows come from."""
    check_vlm_net(path, key="rows", value="image", what="an image-row codec", projector=projector)
    return load_net(path, kind="codec", model=model, split_at=split_at, n_threads=n_threads)


def find_image_codec(at: int, ratio: int):
    """The image codec for split point ``at`` and d/code = ``ratio`` (find_vlm_file), or None."""
    from .codec_train import artifact_name

    return find_vlm_file(artifact_name(at, ratio))


def find_vlm_file(name: str):
    """A trained collab-vlm-tiny file: $COLLAB_VLM_CODECS, ./models/vlm, the installed package
    (collab/vlm/), the checkout this module runs from; None if there is none."""
    here = Path(__file__).resolve().parent
    for d in (os.environ.get(IMAGE_CODEC_ENV), "models/vlm", here, here.parents[2] / "models" / "vlm"):
        if d and (Path(d) / name).is_file():
            return Path(d) / name
    return None


def image_row_policy(codec, before, after, dtype: str = "f16") -> FcRowPolicy:
    """Eq. 1 for an image prompt: rows [len(before), n - len(after)) as codes, the rest exact."""
    return FcRowPolicy(codec, keep_last=int(len(after)), skip_first=int(len(before)), dtype=dtype)


class VlmTask(LlmTask):
    """The "llm" task for the VLM split: its FC payloads are image rows, decoded by the image
    codecs (given paths, else the shipped ones for this split point), each checked against
    the tail's model, split point and projector. Mode shortcut decodes with the VLM's own
    shortcut (``vlm_shortcut`` path, else the trained one for this split point and projector;
    collab.vlm.shortcut); only without one, the text LLM's (or the untrained identity)."""

    def __init__(self, *args, image_codecs=None, projector=None, ratios=(8, 4), vlm_shortcut=None, **kw):
        super().__init__(*args, **kw)
        self._image_codec_paths = list(image_codecs) if image_codecs is not None else None
        self._projector = projector
        self._ratios = ratios
        self._vlm_shortcut_path = vlm_shortcut

    def vlm_shortcut_path(self):
        """The VLM shortcut mode shortcut will use (None: the text LLM's fallback)."""
        from .shortcut import find_vlm_shortcut, vlm_shortcut_matches

        if self._vlm_shortcut_path is not None:
            return self._vlm_shortcut_path
        p = find_vlm_shortcut(self.at)
        return p if p is not None and vlm_shortcut_matches(p, self._projector) else None

    def _shortcut_parts(self):
        from ..llm.shortcut import TokenEmbedding
        from .shortcut import load_vlm_shortcut

        path = self.vlm_shortcut_path() if self._shortcut is None else None
        if self._shortcut is None and path is None:
            return super()._shortcut_parts()
        with self._nets_lock:
            if self._shortcut is None:
                self._shortcut = load_vlm_shortcut(path, model=self.tail.path, split_at=self.at,
                                                   projector=self._projector)
                self._embed = TokenEmbedding(self.tail.path)
            return self._shortcut, self._embed

    def _fc_codecs(self):
        if self._codecs is not None:  # loaded: no wait behind a shortcut load holding the lock
            return self._codecs
        with self._nets_lock:
            if self._codecs is None:
                paths = self._image_codec_paths
                if paths is None:  # the shipped ones, when they belong to this projector
                    paths = [p for p in (find_image_codec(self.at, r) for r in self._ratios)
                             if p is not None and image_codec_matches(p, self._projector)]
                nets = [load_image_codec(p, model=self.tail.path, split_at=self.at, projector=self._projector)
                        for p in paths]
                ks = [n.code_dim for n in nets]
                if len(set(ks)) != len(ks):
                    raise InvalidArgument(f"two image codecs with the same code size: {ks}")
                self._codecs = FcCodecs(nets)
            return self._codecs
