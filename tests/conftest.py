import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest

# Tests never write into the user's cache (~/.cache/collab): everything collab caches during a
# test session (split GGUF parts, trained artifacts rebuilt by recipes) goes to a temporary
# directory removed at exit. COLLAB_TEST_CACHE names a directory to keep between runs instead.
if os.environ.get("COLLAB_TEST_CACHE"):
    os.environ["COLLAB_CACHE"] = os.environ["COLLAB_TEST_CACHE"]
else:
    _cache = tempfile.mkdtemp(prefix="collab-test-cache-")
    os.environ["COLLAB_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)


@pytest.fixture
def rng(request):
    """A fresh random generator per test; its seed is printed on failure to reproduce it."""
    seed = int.from_bytes(os.urandom(4), "little")
    request.node.user_properties.append(("seed", seed))
    print(f"random seed: {seed}")
    return np.random.default_rng(seed)
