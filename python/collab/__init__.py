"""collab: collaborative (device/server split) inference with a native core.

Submodules:
  collab.codec      SLICER feature codec (encode / decode / predict_bits / inspect)
  collab.reference  pure-numpy references of the native kernels
  collab.transport  gRPC device/server transport (collab.Client is its client, loaded lazily)
"""
import os as _os

# llama.cpp's CPU backend (linked by the LLM runner) uses libgomp; with the default spin-wait
# policy, decoding from the Python main thread ran ~10x slower than from a worker thread on
# a loaded 2-core machine (measured: 2.5 vs 29 tok/s, SmolLM2). libgomp reads this at load,
# so it must be set before _native loads. A value the user set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import _native  # noqa: E402
from ._validate import check_choice, check_int  # noqa: E402
from .errors import CollabError, DeviceError, FrameError, InvalidArgument  # noqa: E402

__version__ = _native.version()


def set_num_threads(n: int) -> None:
    """Threads used by native kernels (0 = one per hardware thread)."""
    _native.set_num_threads(check_int("n", n, 0, 2**31 - 1))


def get_num_threads() -> int:
    return _native.get_num_threads()


def simd_level() -> str:
    """SIMD kernels in use: 'avx2', 'neon' or 'scalar'."""
    return _native.get_simd()


SIMD_LEVELS = ("auto", "scalar", "avx2", "neon")


def set_simd_level(level: str) -> None:
    """Force 'scalar' (portable path), a specific ISA ('avx2', 'neon'), or 'auto'.

    An ISA this CPU or build lacks raises InvalidArgument.
    """
    _native.set_simd(check_choice("level", level, SIMD_LEVELS))


def cuda_available() -> bool:
    return _native.cuda_available()


def __getattr__(name):
    # Lazy: `import collab` must not need grpcio.
    if name == "Client":
        from .transport.client import Client
        globals()["Client"] = Client
        return Client
    raise AttributeError(f"module 'collab' has no attribute {name!r}")


__all__ = [
    "Client",
    "CollabError", "DeviceError", "FrameError", "InvalidArgument",
    "set_num_threads", "get_num_threads", "simd_level", "set_simd_level", "cuda_available",
]
