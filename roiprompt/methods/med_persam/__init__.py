"""Med-PerSAM: one-shot, training-free SAM prompting through a small warping network (methods.md §1).

:mod:`.method` holds the ``med_persam`` and ``registration`` methods; :mod:`.warp_prior` the per-reference
warping models and the warped masks (shared with ``med_persam_plus``); :mod:`.warping` the flow U-Net, its
losses, synthetic pairs, fitting and per-pair refinement; the prototype point generator is
:mod:`roiprompt.prompts.points`; what every one-shot method shares is :mod:`roiprompt.methods.oneshot`.
"""
