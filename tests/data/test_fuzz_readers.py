"""Property-based fuzzing of ``read_image`` / ``read_mask`` (issue 20): for any mutated file of any supported
format, each reader returns a valid array or raises InputError -- never another exception, a hang, or > 2 GB.

The inputs are seeds from :mod:`tests.data.fuzz_corpus` mutated by byte-level and format-aware ops that
hypothesis draws; the readers run in a :class:`~tests.data.fuzz_sandbox.Sandbox` child process (timeout, memory
cap, per-call peak RSS). Runs are reproducible (``derandomize=True``, no example database) and bounded: shrinking
is off, since every shrink step of a hang would cost a full timeout; a failure prints the seed and its ops, which
rebuild the input exactly (``mutate(seeds()[name], ops)``), and saves the file under ``$ROIPROMPT_FUZZ_FAILURES``
(default: pytest's temporary folder). ~2,800 inputs x 2 readers.

The longer run is ``python -m benchmarks.fuzz_readers`` (100,000 inputs by default).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .fuzz_corpus import (A_MAX, B_MAX, C_MAX, FORMATS, HEAVY_NAMES, MASK_EXTS, MASK_KINDS, Op, format_ops, generic_ops,
                          mask_like_file, mutate, seeds)
from .fuzz_sandbox import Outcome, Sandbox

MEMORY_LIMIT_MB = 2048
TIMEOUT_S = 30.0

FUZZ = settings(deadline=None, derandomize=True, database=None, phases=(Phase.explicit, Phase.generate),
                suppress_health_check=(HealthCheck.too_slow,), print_blob=False)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(timeout=TIMEOUT_S, memory_limit_mb=MEMORY_LIMIT_MB) as box:
        yield box


@pytest.fixture(scope="module")
def failures_dir(tmp_path_factory) -> Path:
    path = os.environ.get("ROIPROMPT_FUZZ_FAILURES")
    return Path(path) if path else tmp_path_factory.mktemp("fuzz_failures")


def check_contract(box: Sandbox, data: bytes, ext: str, label: str, failures: Path,
                   ops: list[Op] | None = None) -> list[Outcome]:
    """Run both readers on ``data``; on any breach of the contract save the file and fail with every breach."""
    outcomes = box.run(data, ext)
    bad = [o for o in outcomes if not o.ok or o.extra_mb > MEMORY_LIMIT_MB]
    if bad:
        failures.mkdir(parents=True, exist_ok=True)
        saved = failures / f"{label}_{hashlib.sha1(data).hexdigest()[:10]}{ext}"
        saved.write_bytes(data)
        report = "\n".join(o.describe() + (f"\n    peak {o.extra_mb:.0f} MB over idle" if o.ok else "")
                           for o in bad)
        rebuild = f"; rebuilt by mutate(seeds(heavy=True)[{label!r}], {ops!r})" if ops is not None else ""
        # an AssertionError, not pytest.fail: pytest then shows hypothesis' notes (the falsifying draws) too
        raise AssertionError(f"{label}: the reader contract is broken (input saved as {saved}{rebuild}):\n{report}")
    return outcomes


def op_lists(names: tuple[str, ...], min_size: int = 1, max_size: int = 3) -> st.SearchStrategy[list[Op]]:
    op = st.tuples(st.sampled_from(names), st.integers(0, A_MAX - 1), st.integers(0, B_MAX - 1),
                   st.integers(0, C_MAX - 1))
    return st.lists(op, min_size=min_size, max_size=max_size)


def seed_names(fmt: str) -> list[str]:
    return sorted(n for n, s in seeds().items() if s.fmt == fmt)


# -- the corpus itself ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(seeds()))
def test_seed_keeps_the_contract(sandbox, failures_dir, name):
    """Every unmutated seed; the plain valid images among them must actually be read (the fuzzing then starts
    from files the readers take, not from files they already refuse)."""
    seed = seeds()[name]
    image, _ = check_contract(sandbox, seed.data, seed.ext, name, failures_dir)
    if seed.must_read:
        assert image.status == "accepted", f"{name}: valid seed refused by read_image"


# -- mutations --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_byte_mutations_keep_the_contract(sandbox, failures_dir, fmt, data):
    """Bit flips, truncation, inserted / duplicated / deleted / overwritten bytes and integers anywhere."""
    name = data.draw(st.sampled_from(seed_names(fmt)), label="seed")
    ops = data.draw(op_lists(generic_ops(fmt)), label="ops")
    seed = seeds()[name]
    check_contract(sandbox, mutate(seed, ops), seed.ext, name, failures_dir, ops)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_structured_mutations_keep_the_contract(sandbox, failures_dir, fmt, data):
    """Header fields with hostile values (sizes up to 2^32, bit depths, TIFF tag types and counts, IFD loops,
    DICOM values as text / empty / unknown VR / wrong lengths, NIfTI dim / datatype / vox_offset...), chunks and
    segments dropped, repeated, inserted; then up to two more ops of any kind."""
    name = data.draw(st.sampled_from(seed_names(fmt)), label="seed")
    ops = data.draw(op_lists(format_ops(fmt), 1, 1), label="structured op")
    ops += data.draw(op_lists(format_ops(fmt) + generic_ops(fmt), 0, 2), label="more ops")
    seed = seeds()[name]
    check_contract(sandbox, mutate(seed, ops), seed.ext, name, failures_dir, ops)


# -- huge declared sizes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", HEAVY_NAMES)
def test_huge_declared_size_keeps_the_contract(sandbox, failures_dir, name):
    """A few KB declaring 121-134 Mpx (header-only lies, and valid zlib/deflate bombs): refused or read, within
    the time limit and 2 GB."""
    seed = seeds(heavy=True)[name]
    check_contract(sandbox, seed.data, seed.ext, name, failures_dir)


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_mutated_huge_files_keep_the_contract(sandbox, failures_dir, data):
    # the 2.6 GB deflate bomb takes ~10 s a read while it is inflated whole: its unmutated run above covers it
    name = data.draw(st.sampled_from([n for n in HEAVY_NAMES if n != "dcm_deflate_bomb_small_image"]), label="seed")
    seed = seeds(heavy=True)[name]
    ops = data.draw(op_lists(format_ops(seed.fmt) + generic_ops(seed.fmt), 1, 2), label="ops")
    check_contract(sandbox, mutate(seed, ops), seed.ext, name, failures_dir, ops)


# -- mask-like rasters ------------------------------------------------------------------------------------------
@settings(FUZZ, max_examples=300)
@given(kind=st.sampled_from(MASK_KINDS), ext=st.sampled_from(MASK_EXTS), h=st.integers(1, 48),
       w=st.integers(1, 48), seed=st.integers(0, 2 ** 16))
def test_mask_like_rasters_keep_the_contract(sandbox, failures_dir, kind, ext, h, w, seed):
    """Grey 0..255, colour label maps, soft and float masks, 16-bit labels, empty / full / one-pixel masks, 1xN
    and Nx1 rasters, in every lossless format and JPEG: read_mask decides (mask or InputError), never crashes."""
    check_contract(sandbox, mask_like_file(kind, ext, h, w, seed), ext, f"mask_{kind}", failures_dir)
