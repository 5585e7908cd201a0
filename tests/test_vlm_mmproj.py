"""mmproj GGUF writer: keys, tensor names/shapes round trip; mtmd runs it like the numpy reference;
bad files, bad images and a width mismatch with the LLM are clear errors."""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from _llm_common import require_llama
from _vlm_common import TINY_EMBD, reference_rows, require_mtmd, tiny_llm, tiny_parts

from collab.errors import InvalidArgument


def test_round_trip_keys_names_shapes():
    import gguf

    from collab.vlm.mmproj import read_mmproj_info, tensor_layout

    tower, proj, path = tiny_parts()
    r = gguf.GGUFReader(str(path))
    f = lambda k: r.fields[k].contents()  # noqa: E731
    assert f("general.architecture") == "clip"
    assert f("clip.projector_type") == "internvl"
    assert f("clip.has_vision_encoder") is True and f("clip.has_audio_encoder") is False
    assert f("clip.vision.image_size") == 28 and f("clip.vision.patch_size") == 14
    assert f("clip.vision.embedding_length") == 32 and f("clip.vision.block_count") == 2
    assert f("clip.vision.projection_dim") == TINY_EMBD and f("clip.vision.projector.scale_factor") == 1
    assert f("clip.vision.attention.head_count") == 2
    np.testing.assert_allclose(f("clip.vision.image_mean"), [0.485, 0.456, 0.406], rtol=1e-6)
    want = tensor_layout(tower, proj)
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want)
    assert len(got) == 4 + 18 * 2 + 2 + 6
    for name, arr in want.items():
        t = got[name]
        assert tuple(int(x) for x in reversed(t.shape)) == arr.shape, name
        np.testing.assert_array_equal(np.asarray(t.data).reshape(arr.shape), arr, err_msg=name)
    # CLS position row last, patches first; linear weights (out, in)
    np.testing.assert_array_equal(want["v.position_embd.weight"][-1], tower.pos[0])
    np.testing.assert_array_equal(want["v.position_embd.weight"][0], tower.pos[1])
    np.testing.assert_array_equal(want["v.blk.1.attn_q.weight"], tower.blocks[1]["q_w"].T)
    info = read_mmproj_info(path)
    assert (info.n_out, info.n_tokens, info.width) == (TINY_EMBD, 4, 32)


def test_dinov2_layout_shapes():
    pytest.importorskip("onnx")
    from collab.vlm.mmproj import Projector, VisionTower, tensor_layout

    try:
        tower = VisionTower.dinov2(112)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    lay = tensor_layout(tower, Projector.random(384, 576))
    assert len(lay) == 228
    assert lay["v.position_embd.weight"].shape == (65, 384)
    assert lay["v.patch_embd.weight"].shape == (384, 3, 14, 14)
    assert lay["v.blk.11.ffn_up.weight"].shape == (1536, 384)
    with pytest.raises(InvalidArgument):
        VisionTower.dinov2(100)


def test_mtmd_matches_numpy_reference():
    require_llama()
    require_mtmd()
    from collab.vlm.mtmd import LlamaModel, MtmdVision

    tower, proj, path = tiny_parts()
    vis = MtmdVision(path, LlamaModel(tiny_llm()))
    rng = np.random.default_rng(3)
    for _ in range(2):
        img = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
        got = vis.encode(img)
        ref = reference_rows(tower, proj, img)
        assert got.shape == ref.shape == (4, TINY_EMBD)
        cos = (got * ref).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(ref, axis=-1)
        assert cos.min() > 0.9999, cos
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 5e-3
    # CLS first instead of last would be a different (wrong) result: the check can fail
    bad = tower.pos.copy()
    bad[[0, 1]] = bad[[1, 0]]
    import dataclasses

    ref_bad = reference_rows(dataclasses.replace(tower, pos=bad), proj, img)
    assert np.linalg.norm(got - ref_bad) / np.linalg.norm(ref_bad) > 1e-2
    vis.close()


def test_width_mismatch_is_clear_error():
    require_llama()
    require_mtmd()
    from collab.vlm.mtmd import LlamaModel, MtmdVision

    _, _, path = tiny_parts(n_out=48)
    with pytest.raises(InvalidArgument, match="width 48 .* n_embd 64"):
        MtmdVision(path, LlamaModel(tiny_llm()))


def test_bad_mmproj_files(tmp_path):
    from collab.vlm.mmproj import read_mmproj_info

    with pytest.raises(InvalidArgument, match="does not exist"):
        read_mmproj_info(tmp_path / "none.gguf")
    (tmp_path / "x.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(InvalidArgument, match="not a GGUF"):
        read_mmproj_info(tmp_path / "x.gguf")
    _, _, path = tiny_parts()
    data = path.read_bytes()
    (tmp_path / "t.gguf").write_bytes(data[: len(data) // 3])
    with pytest.raises(InvalidArgument):
        read_mmproj_info(tmp_path / "t.gguf")
    # an LLM GGUF is not an mmproj
    with pytest.raises(InvalidArgument, match="missing key"):
        read_mmproj_info(tiny_llm())


def test_truncated_mmproj_does_not_crash(tmp_path):
    """mtmd on a truncated file: a clear error in a child process, never a crash."""
    require_llama()
    require_mtmd()
    _, _, path = tiny_parts()
    data = path.read_bytes()
    bad = tmp_path / "t.gguf"
    bad.write_bytes(data[: len(data) - 1000])
    code = (
        "from collab.vlm.mtmd import LlamaModel, MtmdVision\n"
        "from collab.errors import InvalidArgument\n"
        f"m = LlamaModel({str(tiny_llm())!r})\n"
        "try:\n"
        f"    MtmdVision({str(bad)!r}, m)\n"
        "except InvalidArgument as e:\n"
        "    print('ERR', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ERR" in r.stdout


def test_bad_images():
    from PIL import Image

    from collab.vlm.mtmd import check_image, decode_image, to_model_size

    with pytest.raises(InvalidArgument):
        decode_image(b"")
    with pytest.raises(InvalidArgument, match="cannot decode"):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(buf, "PNG")
    png = buf.getvalue()
    assert decode_image(png).shape == (10, 12, 3)
    with pytest.raises(InvalidArgument, match="cannot decode"):
        decode_image(png[: len(png) // 2])
    with pytest.raises(InvalidArgument, match="uint8"):
        check_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InvalidArgument, match="H, W, 3"):
        check_image(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(InvalidArgument, match="outside"):
        check_image(np.zeros((0, 4, 3), np.uint8))
    assert to_model_size(np.zeros((28, 28), np.uint8), 112).shape == (112, 112, 3)
    assert to_model_size(np.zeros((30, 50, 3), np.uint8), 112).shape == (112, 112, 3)
