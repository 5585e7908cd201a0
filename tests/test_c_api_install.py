"""The installed package ships the C API (header, library, CMake package): a plain C program
builds against it with find_package(collab) and runs without Python."""
import pathlib
import shutil
import subprocess

import pytest

import collab

HERE = pathlib.Path(__file__).resolve().parent


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("cc") is None,
                    reason="needs cmake and a C compiler to build the example")
def test_c_example_builds_against_installed_package(tmp_path):
    pkg = pathlib.Path(collab.__file__).parent
    config_dir = pkg / "lib" / "cmake" / "collab"
    assert (config_dir / "collabConfig.cmake").exists()
    assert (pkg / "include" / "collab" / "collab.h").exists()
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(HERE / "c_example"), "-B", str(build), f"-Dcollab_DIR={config_dir}"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    out = subprocess.run([str(build / "collab_c_example")], check=True, capture_output=True, text=True).stdout
    assert "OK" in out and "malformed frame" in out


OLD_NAMES_C = r"""
#include <collab/collab.h>
#include <stdio.h>
int main(void) {
  int64_t shape[2] = {8, 8};
  collab_codec_params p;
  collab_codec_params_init(&p);
  size_t old_cap = 0, new_cap = 0;
  if (collab_encode_bound(shape, 2, &p, &old_cap) != COLLAB_OK) return 1;
  if (collab_codec_encode_bound(shape, 2, &p, &new_cap) != COLLAB_OK) return 1;
  printf("%s %zu %zu\n", collab_get_simd(), old_cap, new_cap);
  return old_cap == new_cap ? 0 : 1;
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_deprecated_names_link_against_installed_library(tmp_path):
    """A program written against the previous release's names builds (with a deprecation
    warning) and runs against the shared library the wheel ships."""
    pkg = pathlib.Path(collab.__file__).parent
    src = tmp_path / "old_names.c"
    src.write_text(OLD_NAMES_C)
    exe = tmp_path / "old_names"
    build = subprocess.run(["cc", str(src), "-o", str(exe), f"-I{pkg / 'include'}", f"-L{pkg / 'lib'}",
                            "-lcollab_core", f"-Wl,-rpath,{pkg / 'lib'}"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    assert "deprecated" in build.stderr, "the old names should warn"
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
    assert out[0] == collab.simd_level() and out[1] == out[2] and int(out[1]) > 0


STREAM_ARGS_C = r"""
#include <collab/collab.h>
#include <stdio.h>
#include <string.h>
static int32_t cb(int32_t t, const char* p, size_t n, void* u) { (void)t; (void)p; (void)n; (void)u; return 0; }
int main(void) {
  int32_t tok = 1, n = 7;
  /* every required pointer: refused by name, *n_generated reset, nothing else touched */
  collab_status st = collab_llm_session_decode_stream(NULL, NULL, NULL, &tok, 1, 4, cb, NULL, &n);
  printf("%d %d %s\n", (int)st, (int)n, collab_last_error());
  /* stand-in handles: the callback is checked before either is used */
  st = collab_llm_session_decode_stream((collab_llm_session*)&tok, NULL, (const collab_llm_model*)&tok, &tok, 1, 4,
                                        NULL, NULL, NULL);
  printf("%d %s\n", (int)st, collab_last_error());
  return 0;
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_decode_stream_refuses_null_arguments_by_name(tmp_path):
    """collab_llm_session_decode_stream follows the header's argument rules: a NULL required
    pointer is COLLAB_ERR_INVALID_ARGUMENT with "<name> is NULL" (with or without llama.cpp:
    the checks come before any model call)."""
    pkg = pathlib.Path(collab.__file__).parent
    src, exe = tmp_path / "stream_args.c", tmp_path / "stream_args"
    src.write_text(STREAM_ARGS_C)
    build = subprocess.run(["cc", str(src), "-o", str(exe), f"-I{pkg / 'include'}", f"-L{pkg / 'lib'}",
                            "-lcollab_core", f"-Wl,-rpath,{pkg / 'lib'}"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    lines = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()
    assert lines[0] == "1 0 session is NULL"
    assert lines[1] == "1 callback is NULL"
