"""``med_persam_plus``: Med-PerSAM plus a learned token localiser and scored candidates (see :mod:`.method`)."""

from .method import MedPerSAMPlus, MedPerSAMPlusConfig

__all__ = ["MedPerSAMPlus", "MedPerSAMPlusConfig"]
