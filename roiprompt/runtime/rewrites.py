"""Exact graph rewrites applied to a private copy of an encoder for inference, and the code fingerprint that keys
converted models on disk."""

from __future__ import annotations

import hashlib
import inspect
import sys
from pathlib import Path

import torch
from torch import nn

def code_fingerprint(module: nn.Module) -> str:
    """A short hash of the code that defines ``module``: the source files of its roiprompt classes and of this
    runtime package, and the versions of the other packages its classes come from (torch, transformers). A
    converted model cached on disk is reused only by the code that converted it: an edited forward() converts
    again."""
    files, versions = set(Path(__file__).parent.glob("*.py")), {f"torch {torch.__version__}"}
    for m in module.modules():
        top = type(m).__module__.split(".")[0]
        if top == "roiprompt":
            files.add(Path(inspect.getfile(type(m))))
        else:
            versions.add(f"{top} {getattr(sys.modules.get(top), '__version__', '?')}")
    digest = hashlib.sha256("|".join(sorted(versions)).encode())
    for path in sorted(files):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every ``nn.Sequential(Conv2d, BatchNorm2d)`` of ``module`` (in place) into one biased Conv2d.

    ``w' = w * g / sqrt(var + eps)``, ``b' = beta + (b - mean) * g / sqrt(var + eps)``: the eval-mode BatchNorm
    output, with one memory pass less. Call it on a copy in eval mode.
    """
    for name, child in module.named_children():
        parts = list(child.children()) if isinstance(child, nn.Sequential) else []
        if (len(parts) == 2 and isinstance(parts[0], nn.Conv2d) and isinstance(parts[1], nn.BatchNorm2d)
                and parts[1].track_running_stats):
            conv, bn = parts
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
            with torch.no_grad():
                fused.weight.copy_(conv.weight * scale[:, None, None, None])
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
            fused.requires_grad_(False)
            setattr(module, name, fused)
        else:
            fold_batchnorm(child)
    return module


def split_qkv(module: nn.Module) -> nn.Module:
    """Call ``split_qkv_()`` (in place) on every submodule that defines it: fused attention projections rewritten
    for inference. Call it on a private copy: the state dict no longer matches the checkpoint."""
    for m in list(module.modules()):
        if callable(getattr(m, "split_qkv_", None)):
            m.split_qkv_()
    return module



class _Method(nn.Module):
    """One method of an encoder (``stem`` or ``body``) as a module's ``forward``, for conversion."""

    def __init__(self, encoder: nn.Module, name: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.encoder, self.name)(x)


class _Float32Stem(nn.Module):
    """``body(stem(x))`` with the stem outside autocast (float32) and the body under the caller's autocast."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            x = self.encoder.stem(x.float())
        return self.encoder.body(x)
