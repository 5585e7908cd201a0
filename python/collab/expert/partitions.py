"""Fashion-MNIST superclass partitions and the expert library's keys.

Classes: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker,
8 Bag, 9 Ankle boot. Partitions group garments a shopper would call one kind of thing; the
hard confusions of Fashion-MNIST (shirt / T-shirt / pullover / coat) fall inside "tops", so a
top-2 set is mostly a single partition and its expert is a tops specialist.

  S=2: tops {0,2,4,6} | everything else {1,3,5,7,8,9}
  S=3: tops {0,2,4,6} | bottoms+dresses+bags {1,3,8} | footwear {5,7,9}
  S=4: tops {0,2,4,6} | bottoms+dresses {1,3} | footwear {5,7,9} | bags {8}
"""
from __future__ import annotations

from itertools import combinations

from ..errors import InvalidArgument

NUM_CLASSES = 10
PARTITIONS = {
    2: ((0, 2, 4, 6), (1, 3, 5, 7, 8, 9)),
    3: ((0, 2, 4, 6), (1, 3, 8), (5, 7, 9)),
    4: ((0, 2, 4, 6), (1, 3), (5, 7, 9), (8,)),
}
NAMES = {
    2: ("tops", "other"),
    3: ("tops", "bottoms-dresses-bags", "footwear"),
    4: ("tops", "bottoms-dresses", "footwear", "bags"),
}


def partition_of(s: int) -> tuple:
    """Length-10 tuple: partition id of each class for S = s."""
    if s not in PARTITIONS:
        raise InvalidArgument(f"S must be one of {sorted(PARTITIONS)}, got {s!r}")
    out = [0] * NUM_CLASSES
    for pid, classes in enumerate(PARTITIONS[s]):
        for c in classes:
            out[c] = pid
    return tuple(out)


def expert_sets(s: int, k: int = 2) -> list:
    """Every non-empty union of at most k partitions, as sorted tuples (the library's keys):
    sum_{i=1..k} C(S, i) experts, so every top-k routing outcome has one."""
    if s not in PARTITIONS:
        raise InvalidArgument(f"S must be one of {sorted(PARTITIONS)}, got {s!r}")
    if k < 1:
        raise InvalidArgument(f"k must be >= 1, got {k!r}")
    return [c for i in range(1, min(k, s) + 1) for c in combinations(range(s), i)]


def classes_of(s: int, key) -> tuple:
    """Sorted classes of the union of partitions `key`."""
    parts = PARTITIONS[s]
    return tuple(sorted(c for p in key for c in parts[p]))


def set_name(key) -> str:
    """File-name form of a partition set: (0, 2) -> 'p0-2'."""
    return "p" + "-".join(str(int(p)) for p in key)
