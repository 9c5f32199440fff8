"""Fitted methods on disk without pickle: :meth:`Method.save <roiprompt.methods.base.Method.save>` writes a folder,
:func:`load_fitted` reads it back into a method that predicts the same masks and probabilities, bit for bit.

A fitted folder::

    roiprompt_fitted.json   format and roiprompt version, method name, config, backbone name + weights SHA-256,
                            the SHA-256 of every tensor file, the method's JSON metadata ("state")
    tensors.safetensors     the method's tensors (learned weights, references, statistics); read with safetensors
    <part>/                 a method it was built with (a classifier's ``segmenter``), a fitted folder itself

Each method says what it learned through two hooks, ``_fitted_state() -> (meta, tensors)`` and
``_restore_fitted_state(meta, tensors)``; this module owns the files, the hashes and the checks, so no method has
file-format code of its own. Loading builds the method with :func:`~roiprompt.methods.base.load_method` from the
saved name and config, checks the backbone's weights hash against the saved one and restores the state; nothing
is unpickled, and nothing is refit. The folder is written next to its final name and renamed into place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, InputError, NotSavableError, RoiPromptError, shown
from ..files import atomic_path, atomic_write_text, sha256_file
from ..models.backbones.base import Backbone, load_backbone
from ..version import __version__
from .base import Method, load_method, method_class

__all__ = ["FITTED_FILE", "FORMAT_VERSION", "TENSOR_FILE", "load_fitted", "read_fitted", "save_fitted"]

#: Version of the folder layout; a folder of a newer format is refused (upgrade roiprompt to read it).
FORMAT_VERSION = 1
FITTED_FILE = "roiprompt_fitted.json"
TENSOR_FILE = "tensors.safetensors"
_FORMAT = "roiprompt-fitted"


# -- writing --------------------------------------------------------------------------------------------------------
def save_fitted(method: Method, path: str | os.PathLike) -> Path:
    """Write ``method`` to the folder ``path`` (see :meth:`Method.save <roiprompt.methods.base.Method.save>`).

    The folder is written under a hidden temporary name beside ``path`` and renamed into place once complete;
    on any error (an unfitted method, a method that cannot be saved, a config that is not JSON) it is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    _check_destination(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"  # hidden, unique, beside its final name
    tmp.mkdir()  # (mkdir, not mkdtemp: the folder gets the usual permissions)
    try:
        _write(method, tmp)
        _replace_folder(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _check_destination(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise InputError(f"{shown(path)}: exists and is not a folder; a fitted method is saved as a folder")
    if path.is_dir() and not (path / FITTED_FILE).is_file() and any(path.iterdir()):
        raise InputError(f"{shown(path)}: a folder that is not empty and holds no {FITTED_FILE}; refusing to "
                         "replace it (choose a new or empty folder, or one a method was saved to)")


def _write(method: Method, folder: Path) -> None:
    """Write ``method``'s fitted folder into the (empty, new) ``folder``, the JSON last."""
    meta, tensors = method._fitted_state()
    config = _config_record(method)
    parts = method._fitted_parts()
    state = {name: _as_tensor(method.name, name, value) for name, value in tensors.items()}
    record_parts = {}
    for key, part in parts.items():
        sub = folder / key
        sub.mkdir()
        _write(part, sub)
        record_parts[key] = {"folder": key, "sha256": sha256_file(sub / FITTED_FILE)}
    from safetensors.torch import save_file

    with atomic_path(folder / TENSOR_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": _FORMAT, "method": method.name})
    del state
    backbone = method.backbone
    options = backbone.inference
    record = {
        "format": _FORMAT, "format_version": FORMAT_VERSION, "roiprompt_version": __version__,
        "method": method.name, "config": config,
        "backbone": {"name": backbone.name, "weights_sha256": backbone.weights_sha256,
                     "inference": dataclasses.asdict(options) if options is not None else None},
        "files": {TENSOR_FILE: {"sha256": sha256_file(folder / TENSOR_FILE), "tensors": len(tensors)}},
        "parts": record_parts, "state": meta,
    }
    try:
        text = json.dumps(record, indent=1)
    except (TypeError, ValueError) as err:  # a hook returned something that is not JSON
        raise NotSavableError(f"{method.name}: its fitted metadata is not JSON ({err})") from None
    atomic_write_text(folder / FITTED_FILE, text + "\n")


def _as_tensor(method: str, name: str, value: Any) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value, order="C"))  # a copy (the method's arrays may be read-only)
    if not isinstance(value, torch.Tensor):
        raise NotSavableError(f"{method}: fitted state {name!r} is a {type(value).__name__}, not a tensor or array")
    return value.detach().cpu().contiguous().clone()  # clone: safetensors refuses tensors that share memory


def _config_record(method: Method) -> dict[str, Any]:
    """The config as JSON values, refused unless it reads back to an equal config."""
    cls = type(method.config)
    values = {f.name: getattr(method.config, f.name) for f in dataclasses.fields(cls)}
    try:
        record = json.loads(json.dumps(values))
    except (TypeError, ValueError) as err:
        raise NotSavableError(f"{method.name}: its config is not JSON ({err})") from None
    if cls(**config_from_record(cls, record)) != method.config:
        changed = [k for k in values if config_from_record(cls, record)[k] != values[k]]
        raise NotSavableError(f"{method.name}: config {changed} does not survive JSON; it cannot be saved yet")
    return record


def config_from_record(cls: type, record: dict[str, Any]) -> dict[str, Any]:
    """JSON config values -> keyword arguments of ``cls``: lists back to tuples where the field is a tuple."""
    hints = typing.get_type_hints(cls)
    out = dict(record)
    for name, value in record.items():
        if isinstance(value, list) and name in hints and _is_tuple_hint(hints[name]):
            out[name] = tuple(value)
    return out


def _is_tuple_hint(hint: Any) -> bool:
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return any(m is tuple or typing.get_origin(m) is tuple for m in members)


def _replace_folder(tmp: Path, path: Path) -> None:
    """Rename the finished ``tmp`` to ``path``; an existing fitted folder (or an empty one) is replaced."""
    if not path.exists():
        os.replace(tmp, path)
        return
    if not any(path.iterdir()):
        path.rmdir()
        os.replace(tmp, path)
        return
    old = path.parent / f".{path.name}.{secrets.token_hex(6)}.old"
    old.mkdir()
    os.replace(path, old / "fitted")
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old / "fitted", path)  # put the old one back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


# -- reading --------------------------------------------------------------------------------------------------------
def load_fitted(path: str | os.PathLike, backbone: str | Backbone | None = None, *, weights: str | None = None,
                cache_dir: str | os.PathLike | None = None) -> Method:
    """Load a method saved with :meth:`Method.save <roiprompt.methods.base.Method.save>`, ready to predict.

    The method is built with :func:`~roiprompt.load_method` from the saved name and config, then its fitted state
    (references, warping models, localiser heads, classifier heads and statistics) is restored: nothing is refit,
    and it predicts the same masks and probabilities as the saved one, bit for bit, on the same backbone settings
    (runtime, precision). One-shot references are re-encoded (the encoder is deterministic). Only JSON and
    safetensors are read; nothing is unpickled.

    Args:
        path: the folder ``save`` wrote.
        backbone: None to load the saved backbone by its registry name (the offline default for ``litemedsam``),
            a registry name, or a built backbone (e.g. one shared with other methods). Its weights must have the
            saved SHA-256.
        weights: checkpoint of a backbone loaded by name (e.g. a SAM folder); None: its default.
        cache_dir: on-disk embedding cache of the loaded method (None: none); not part of the saved state.

    Returns:
        The fitted method.

    Raises:
        CheckpointError: not a fitted folder, a missing file, a file whose SHA-256 differs from the record (the
            message names it), a format newer than this roiprompt reads (upgrade roiprompt), a backbone with
            other weights than the saved one (both hashes named), or state that does not fit the method.

    Example:
        >>> method.save("fitted/heart")                               # a fitted med_persam_plus, segprompt, ...
        >>> method = roiprompt.load_fitted("fitted/heart")           # a new process: no reference, no fit
        >>> method.predict(image).mask                               # the saved method's mask, bit for bit
    """
    path = Path(path)
    record = _read_record(path)
    _verify_files(path, record)
    built = _backbone(path, record["backbone"], backbone, weights)
    parts = {}
    for key, info in record["parts"].items():
        sub = path / info["folder"]
        _verify_file(sub / FITTED_FILE, info["sha256"], path)
        same = _read_record(sub)["backbone"]
        shared = same["name"] == built.name and same["weights_sha256"] == built.weights_sha256
        parts[key] = load_fitted(sub, built if shared else None, cache_dir=cache_dir)
    try:
        cls = method_class(record["method"])
    except InputError as err:
        raise CheckpointError(f"{shown(path)}: {err} (saved by roiprompt {record['roiprompt_version']})") from None
    config = config_from_record(cls.config_class, record["config"])
    try:
        method = load_method(record["method"], backbone=built, cache_dir=cache_dir, **config, **parts)
    except InputError as err:  # a config field this roiprompt no longer has, or a value it no longer allows
        raise CheckpointError(f"{shown(path)}: the saved config does not fit this roiprompt's {cls.name!r} ({err}; "
                              f"saved by roiprompt {record['roiprompt_version']})") from None
    tensors = _load_tensors(path)
    try:
        method._restore_fitted_state(record["state"], tensors)
    except RoiPromptError:
        raise
    except (KeyError, IndexError, TypeError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{shown(path)}: the saved state does not fit {record['method']!r} "
                              f"({type(err).__name__}: {err})") from None
    return method


def read_fitted(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A fitted folder's record (``roiprompt_fitted.json``: method, config, backbone, state) and its tensors,
    hash-checked, without building the method or loading a backbone: what a tool needs to show or route a fitted
    method (the method's name, a one-shot reference's images and masks).

    Raises:
        CheckpointError: as :func:`load_fitted`, for the folder and its files.
    """
    path = Path(path)
    record = _read_record(path)
    _verify_files(path, record)
    return record, _load_tensors(path)


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path / TENSOR_FILE))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{shown(path / TENSOR_FILE)}: unreadable safetensors file ({err})") from None


def _read_record(path: Path) -> dict[str, Any]:
    file = path / FITTED_FILE
    if not path.is_dir():
        raise CheckpointError(f"{shown(path)}: no such folder (a fitted method is a folder written by "
                              "method.save(path))")
    if not file.is_file():
        raise CheckpointError(f"{shown(file)}: missing; {shown(path)} is not a fitted method folder")
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{shown(file)}: unreadable ({err})") from None
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise CheckpointError(f"{shown(file)}: not a roiprompt fitted-method record")
    version = record.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{shown(file)}: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{shown(file)}: written by roiprompt {record.get('roiprompt_version')} in format "
                              f"{version}; this roiprompt ({__version__}) reads formats up to "
                              f"{FORMAT_VERSION}: upgrade roiprompt to load it")
    missing = [k for k in ("method", "config", "backbone", "files", "parts", "state") if k not in record]
    if missing:
        raise CheckpointError(f"{shown(file)}: incomplete record, no {missing}")
    return record


def _verify_files(path: Path, record: dict[str, Any]) -> None:
    if TENSOR_FILE not in record["files"]:
        raise CheckpointError(f"{shown(path / FITTED_FILE)}: records no {TENSOR_FILE}")
    for name, info in record["files"].items():
        _verify_file(path / name, info.get("sha256"), path)


def _verify_file(file: Path, expected: str | None, folder: Path) -> None:
    if not file.is_file():
        raise CheckpointError(f"{shown(file)}: missing from the fitted folder {shown(folder)}")
    actual = sha256_file(file)
    if actual != expected:
        raise CheckpointError(f"{shown(file)}: SHA-256 {actual} differs from the recorded {expected}; the file was "
                              "changed or damaged after it was saved")


def _backbone(path: Path, saved: dict[str, Any], given: str | Backbone | None, weights: str | None) -> Backbone:
    name, sha = saved["name"], saved["weights_sha256"]
    if given is None or isinstance(given, str):
        try:
            given = load_backbone(given or name, weights=weights)
        except RoiPromptError as err:
            raise CheckpointError(f"{shown(path)} was fitted with backbone {name!r}, which did not load ({err}); "
                                  "pass load_fitted(path, backbone=...) or weights=...") from None
    if given.name != name or given.weights_sha256 != sha:
        raise CheckpointError(f"{shown(path)} was fitted with backbone {name!r} with weights SHA-256 {sha}, but the "
                              f"backbone given is {given.name!r} with weights SHA-256 {given.weights_sha256}; load "
                              "it with the backbone and weights it was fitted with")
    return given
