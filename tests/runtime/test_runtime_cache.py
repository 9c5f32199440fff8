"""The converted-model cache of the OpenVINO runtime heals itself: a model that fails to load is deleted and
converted again once, a failed reconversion falls back to eager and says so, and writes are atomic.

A two-layer convolution on 16x16 inputs keeps every conversion well under a second.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from roiprompt.runtime import EncoderRunner, InferenceOptions, openvino_available

pytestmark = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")

LOGGER = "roiprompt.runtime.runner"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROIPROMPT_RUNTIME_CACHE", str(tmp_path))
    monkeypatch.delenv("ROIPROMPT_RUNTIME", raising=False)


@pytest.fixture(scope="module")
def module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _runner(module: nn.Module, runtime: str = "openvino") -> EncoderRunner:
    return EncoderRunner(module, InferenceOptions(runtime=runtime), input_size=16, key="tiny")


def _saved(tmp_path) -> list[str]:
    return sorted(p.suffix for p in tmp_path.iterdir())


_CORRUPTIONS = {
    "garbage xml": lambda xml: xml.write_bytes(b"garbage"),
    "truncated xml": lambda xml: xml.write_bytes(xml.read_bytes()[:200]),
    "truncated bin": lambda xml: xml.with_suffix(".bin").write_bytes(xml.with_suffix(".bin").read_bytes()[:10]),
    "missing bin": lambda xml: xml.with_suffix(".bin").unlink(),
}


@pytest.mark.parametrize("corrupt", list(_CORRUPTIONS))
def test_a_cached_model_that_fails_to_load_is_converted_again_once(corrupt, module, pixels, tmp_path, caplog):
    first = _runner(module)
    fresh = first(pixels)  # converts and caches
    xml = first._openvino_model_path()
    _CORRUPTIONS[corrupt](xml)
    with caplog.at_level("WARNING", logger=LOGGER):
        healed = _runner(module)  # a later run
        out = healed(pixels)
    assert healed.runtime == "openvino" and torch.equal(out, fresh)
    with torch.no_grad():
        assert (out - module(pixels)).abs().max() < 1e-5
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(xml) in warnings[0] and "converting the encoder again" in warnings[0]
    assert _saved(tmp_path) == [".bin", ".xml"]  # rebuilt in place, no temporary files left
    caplog.clear()
    reader = _runner(module)
    reader.module = nn.Identity()  # the rebuilt cache is read: converting this module would give other numbers
    assert torch.equal(reader(pixels), fresh) and not caplog.records


def test_a_failed_reconversion_falls_back_to_eager_and_says_so(module, pixels, tmp_path, monkeypatch, caplog):
    import openvino as ov

    xml = _runner(module)._openvino_model_path()
    _runner(module)(pixels)
    xml.write_bytes(b"garbage")

    def broken(*args, **kwargs):
        raise RuntimeError("cannot trace this")

    monkeypatch.setattr(ov, "convert_model", broken)
    automatic = _runner(module, runtime="auto")
    assert automatic.runtime == "openvino"
    with caplog.at_level("WARNING", logger=LOGGER):
        out = automatic(pixels)
    assert automatic.runtime == "eager"
    with torch.no_grad():
        assert (out - module(pixels)).abs().max() < 1e-5
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and "cannot be read" in warnings[0] and "running it eager instead" in warnings[1]
    assert list(tmp_path.iterdir()) == []  # the bad model is gone: the next run tries to convert again
    xml.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="cannot trace this"):  # an explicit runtime="openvino" never hides it
        _runner(module)(pixels)


def test_cache_writes_are_atomic_bin_first(module, pixels, tmp_path, monkeypatch):
    renamed: list[str] = []
    real_replace = os.replace

    def replace(src, dst):
        renamed.append(os.path.basename(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    runner = _runner(module)
    runner(pixels)
    xml = runner._openvino_model_path()
    finals = [name for name in renamed if not name.startswith(".")]  # atomic_path's renames onto the final names
    assert finals == [xml.with_suffix(".bin").name, xml.name]  # a reader never sees an .xml without its .bin
    assert _saved(tmp_path) == [".bin", ".xml"]


def test_a_failed_cache_write_leaves_nothing_and_the_model_still_runs(module, pixels, tmp_path, monkeypatch, caplog):
    import openvino as ov

    real_save = ov.save_model

    def save_then_fail(model, path, **kwargs):
        real_save(model, path, **kwargs)  # both temporary files exist when the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ov, "save_model", save_then_fail)
    runner = _runner(module)
    with caplog.at_level("WARNING", logger=LOGGER):
        out = runner(pixels)
    assert runner.runtime == "openvino" and "could not cache" in caplog.text
    with torch.no_grad():
        assert (out - module(pixels)).abs().max() < 1e-5
    assert list(tmp_path.iterdir()) == []  # no half-written model, no temporary files
