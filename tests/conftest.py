import os

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A fresh random generator per test; its seed is printed on failure to reproduce it."""
    seed = int.from_bytes(os.urandom(4), "little")
    request.node.user_properties.append(("seed", seed))
    print(f"random seed: {seed}")
    return np.random.default_rng(seed)
