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
