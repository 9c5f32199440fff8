"""Train/test splits (roiprompt.data.splits): official, seeded (stratified, grouped by patient), from a file."""

from __future__ import annotations

import hashlib

import pytest

from roiprompt.data import load_dataset
from roiprompt.data.splits import DEFAULT_TEST_FRACTION, groups_of, parse_split, resolve_split, seeded_split
from roiprompt.errors import InputError
from tests.conftest import data_root
from tests.evaluation._folder import busbra_folder


def test_parse_split_specs():
    assert parse_split("official") == {"kind": "official"}
    assert parse_split("validation") == {"kind": "validation"}
    assert parse_split("seed:3") == {"kind": "seed", "seed": 3, "test_fraction": DEFAULT_TEST_FRACTION}
    assert parse_split("seed:0,test=0.5") == {"kind": "seed", "seed": 0, "test_fraction": 0.5}
    assert parse_split("file:a/b.csv") == {"kind": "file", "path": "a/b.csv"}
    for bad in ("seed", "seed:x", "seed:0,test=1.5", "random", "file:"):
        with pytest.raises(InputError):
            parse_split(bad)


def test_seeded_split_is_stratified_deterministic_and_exact_without_groups():
    labels = ["a"] * 10 + ["b"] * 20 + [None] * 3
    train, test = seeded_split(labels, seed=0)
    assert sorted(train + test) == list(range(len(labels))) and not set(train) & set(test)
    assert [labels[i] for i in test].count("a") == 3 and [labels[i] for i in test].count("b") == 6
    assert seeded_split(labels, seed=0) == (train, test)  # the same on every call / machine
    assert seeded_split(labels, seed=1) != (train, test)
    _, half = seeded_split(labels, seed=0, test_fraction=0.5)
    assert [labels[i] for i in half].count("b") == 10


def test_seeded_split_never_puts_one_patient_on_both_sides():
    labels = ["a"] * 12 + ["b"] * 12
    groups = [f"patient{i // 3}" for i in range(24)]  # 8 patients of 3 images, one label each
    for seed in range(10):
        train, test = seeded_split(labels, seed, groups=groups)
        assert not {groups[i] for i in train} & {groups[i] for i in test}
        assert {labels[i] for i in test} == {"a", "b"} and {labels[i] for i in train} == {"a", "b"}
        assert len(test) == 6  # 30 % of each class's 12 images is 3.6 -> 4; one patient (3) fills it best


def test_folder_split_defaults_to_seed_0_and_is_grouped_by_the_labels_csv_group_column(tmp_path):
    data = load_dataset("folder", root=busbra_folder(tmp_path))
    groups = groups_of(data)
    assert groups is not None and groups[0].startswith("patient")
    split = resolve_split(data)
    assert split.name == "seed:0" and split.grouped
    assert split.record_fields() == {"split": "seed:0", "split_sizes": {"train": 8, "test": 4}}
    patients = lambda part: {i.split("_")[0] for i in part.ids}  # noqa: E731
    assert not patients(split.train) & patients(split.test)
    assert sorted(split.test.labels) == ["benign", "benign", "malignant", "malignant"]
    assert resolve_split(data, "seed:1,test=0.5").name == "seed:1,test=0.5"
    with pytest.raises(InputError, match="no official"):
        resolve_split(data, "official")


def test_folder_without_group_column_has_no_groups(tmp_path):
    data = load_dataset("folder", root=busbra_folder(tmp_path, groups=False))
    assert groups_of(data) is None and not resolve_split(data).grouped


def test_split_file_is_named_by_path_and_hash_and_refuses_leaks(tmp_path):
    data = load_dataset("folder", root=busbra_folder(tmp_path))
    path = tmp_path / "splits.csv"
    rows = ["id,split"] + [f"{i},{'test' if i.startswith('p0001') else 'train'}" for i in data.ids[:-2]]
    rows.append(f"{data.ids[-2]},val")  # neither side; the last id is not listed at all
    path.write_text("\n".join(rows) + "\n")
    split = resolve_split(data, split_file=str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert split.name == f"file:{path}#sha256={digest}"
    assert split.test.ids == ["p0001_l", "p0001_r"] and len(split.train) == 8
    assert resolve_split(data, f"file:{path}").name == split.name
    leak = tmp_path / "leak.csv"
    leak.write_text("id,split\np0001_l,train\np0001_r,test\n")
    with pytest.raises(InputError, match="both train and test"):
        resolve_split(data, split_file=str(leak))
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("id,split\nnope,train\np0001_r,test\n")
    with pytest.raises(InputError, match="not in dataset"):
        resolve_split(data, split_file=str(unknown))
    bad = tmp_path / "bad.csv"
    bad.write_text("image,part\na,train\n")
    with pytest.raises(InputError, match="id,split"):
        resolve_split(data, split_file=str(bad))


def test_official_split_is_the_default_where_it_exists():
    data = load_dataset("jsrt", root=data_root("jsrt").parent)
    split = resolve_split(data)
    assert split.name == "official"
    assert split.train.ids == data.split("train").ids and split.test.ids == data.split("test").ids
    assert resolve_split(data, "seed:0").name == "seed:0"


def test_validation_split_is_busbra_train_against_its_validation_part():
    data = load_dataset("busbra", root=data_root("busbra").parent, label="pathology")
    split = resolve_split(data, "validation")
    assert split.name == "validation"
    assert split.train.ids == data.split("train").ids and split.test.ids == data.split("val").ids
    assert not set(split.test.ids) & set(data.split("test").ids)  # never a test image
    jsrt = load_dataset("jsrt", root=data_root("jsrt").parent)
    with pytest.raises(InputError, match="no official validation split"):
        resolve_split(jsrt, "validation")
