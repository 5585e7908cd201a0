"""Pure-numpy reference implementations of the native kernels (for tests and clarity)."""
