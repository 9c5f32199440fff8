"""Every CLI test: logs under its tmp_path, eager runtime, and thread settings a command changes undone."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Logs under tmp_path; --threads / --runtime set by a command are undone after each test."""
    monkeypatch.setenv("ROIPROMPT_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("ROIPROMPT_RUNTIME", "eager")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
