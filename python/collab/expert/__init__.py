"""Ask the Expert: an edge generalist ViT, a near-edge library of specialist experts, top-k routing.

    collab.expert.route(logits, tau=, k=, partition_of=)   Algorithm 1 on a batch (numpy only)
    collab.expert.partitions    Fashion-MNIST superclass partitions, expert keys (S = 2, 3, 4)
    collab.expert.model         ViT classifier artifacts run with ONNX Runtime (no torch)
    collab.expert.artifacts     fp16 / int8 artifact files, the library manifest, export from the recipe
    collab.expert.server        `collab serve` task hosting the expert library (LRU, dynamic batching)
    collab.expert.device        the edge side: local model, routing, offload, fallback
    collab.expert.planner       profiles T_E(b), T_N(b), measured link latency; choose tau
    collab.expert.energy        the stated device power model
    collab.expert.train         training recipe (torch; never imported by the runtime)
"""
from __future__ import annotations

from .partitions import expert_sets, partition_of
from .routing import route

__all__ = ["route", "partition_of", "expert_sets"]
