"""Training recipe for Ask the Expert (imports torch; nothing in the runtime imports this).

  masked.py     forward pass of a ViT classifier with head/neuron/channel masks
  prune.py      loss-based importance |d loss / d mask| and structured slicing to a smaller ViT
  distill.py    the progressive weighted distillation loss (paper Eq. 1-3)
  recipe.py     every artifact, stage by stage, resumable: python -m collab.expert.train.recipe
"""
