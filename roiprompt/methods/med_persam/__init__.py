"""Med-PerSAM: one-shot, training-free SAM prompting through a small warping network (methods.md §1).

Building blocks live in submodules: :mod:`.warping` (the flow U-Net, its losses, synthetic pairs and fitting);
the prototype point generator is :mod:`roiprompt.prompts.points`.
"""
