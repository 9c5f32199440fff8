"""Few-shot sampling is stratified, reproducible per seed, and only picks references with a non-empty ROI."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from roiprompt.data import load_dataset, sample_fraction, sample_per_class, sample_references, sample_support
from roiprompt.errors import InputError
from roiprompt.types import Sample

from ._make import disc, grey, save_pil

LABELS = ["a"] * 10 + ["b"] * 6 + [None] * 3 + ["c"] * 4


def test_sample_per_class_stratified_and_deterministic():
    picked = sample_per_class(LABELS, 3, seed=0)
    assert picked == sorted(picked) and len(set(picked)) == 9
    assert collections.Counter(LABELS[i] for i in picked) == {"a": 3, "b": 3, "c": 3}
    assert sample_per_class(LABELS, 3, seed=0) == picked
    assert len({tuple(sample_per_class(LABELS, 3, seed=s)) for s in range(5)}) == 5
    assert sample_per_class(LABELS, "all", seed=0) == [i for i, v in enumerate(LABELS) if v is not None]


def test_sample_per_class_errors():
    with pytest.raises(InputError, match=r"class\(es\) \['c'\] have fewer than k=5 samples "
                                         r"\(counts: \{'a': 10, 'b': 6, 'c': 4\}\)"):
        sample_per_class(LABELS, 5, seed=0)
    for bad in (0, -1, 2.5, "some", True):
        with pytest.raises(InputError, match="k must be a positive integer"):
            sample_per_class(LABELS, bad, seed=0)
    with pytest.raises(InputError, match="no labelled sample"):
        sample_per_class([None, None], 1, seed=0)


def test_sample_fraction_is_a_stratified_share_of_each_class():
    picked = sample_fraction(LABELS, 0.5, seed=0)
    assert collections.Counter(LABELS[i] for i in picked) == {"a": 5, "b": 3, "c": 2}
    assert sample_fraction(LABELS, 0.5, seed=0) == picked != sample_fraction(LABELS, 0.5, seed=1)
    # every class keeps at least one image; 100 % is every labelled index
    assert collections.Counter(LABELS[i] for i in sample_fraction(LABELS, 0.05, seed=0)) == {"a": 1, "b": 1, "c": 1}
    assert sample_fraction(LABELS, 1.0, seed=3) == sample_per_class(LABELS, "all", seed=0)
    assert sample_support(LABELS, "50%", seed=0) == picked and sample_support(LABELS, 2, 0) == sample_per_class(LABELS, 2, 0)
    for bad in (0, 1.5, -0.1, True):
        with pytest.raises(InputError, match="fraction must be in"):
            sample_fraction(LABELS, bad, seed=0)
    with pytest.raises(InputError, match="not a percentage"):
        sample_support(LABELS, "x%", seed=0)


@pytest.fixture()
def mixed_folder(tmp_path):
    """10 images; masks non-empty for ids 0, 3, 6, 9 only."""
    for i in range(10):
        save_pil(tmp_path / "images" / f"im{i}.png", grey(seed=i))
        mask = disc() if i % 3 == 0 else np.zeros((24, 32), bool)
        save_pil(tmp_path / "masks" / f"im{i}.png", mask.astype(np.uint8) * 255)
    return load_dataset("folder", root=tmp_path)


def test_sample_references_only_non_empty(mixed_folder):
    eligible = {0, 3, 6, 9}
    draws = [tuple(sample_references(mixed_folder, 2, seed=s)) for s in range(8)]
    assert all(set(d) <= eligible and len(set(d)) == 2 for d in draws)
    assert sample_references(mixed_folder, 2, seed=3) == list(draws[3])
    assert len(set(draws)) > 1
    assert sorted(sample_references(mixed_folder, 4, seed=0)) == [0, 3, 6, 9]
    with pytest.raises(InputError, match=r"only 4 of 10 samples have a non-empty 'roi' mask; cannot draw k=5"):
        sample_references(mixed_folder, 5, seed=0)
    with pytest.raises(InputError, match=r"no structure 'heart'; it has \['roi'\]"):
        sample_references(mixed_folder, 1, seed=0, structure="heart")


def test_sample_references_on_a_list_of_samples():
    samples = [Sample(str(i), grey(), {"roi": disc() if i % 2 else np.zeros((24, 32), bool)}) for i in range(6)]
    picked = sample_references(samples, 2, seed=1, structure="roi")
    assert all(i % 2 for i in picked) and picked == sample_references(samples, 2, seed=1, structure="roi")


def test_real_busbra_support_sets():
    from tests.conftest import data_root

    train = load_dataset("busbra", root=data_root("busbra").parent).split("train")
    support = sample_per_class(train, 8, seed=0)
    assert collections.Counter(train.labels[i] for i in support) == {"benign": 8, "malignant": 8}
    assert support == sample_per_class(train, 8, seed=0) != sample_per_class(train, 8, seed=1)
    jsrt = load_dataset("jsrt", root=data_root("jsrt").parent).split("train")
    ref = sample_references(jsrt, 1, seed=0, structure="heart")
    assert len(ref) == 1 and jsrt[ref[0]].masks["heart"].any()
