"""Exception types raised by collab (the native bindings raise these too)."""


class CollabError(RuntimeError):
    """An unexpected failure inside the native core."""


class InvalidArgument(ValueError):
    """A parameter or input tensor that collab cannot accept (bad range, dtype, NaN/Inf)."""


class FrameError(ValueError):
    """Bytes that are not a valid collab frame: truncated, corrupted, or malformed."""


class DeviceError(CollabError):
    """CUDA was asked for but is not available, or a CUDA call failed."""
