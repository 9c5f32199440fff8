"""The three official datasets on the real files in shared/data: counts from listings and tables, a few samples
read, official splits. Fails (never skips) in CI when the data is missing."""

from __future__ import annotations

import collections
import re
import shutil

import numpy as np
import pytest
from PIL import Image

import roiprompt
from roiprompt.data import Dataset, default_root, find_datasets, list_datasets, load_dataset, read_mask
from roiprompt.errors import DataError, InputError
from tests.conftest import data_root


def _load(name: str, **kw) -> Dataset:
    return load_dataset(name, root=data_root(name).parent, **kw)


# -- Kvasir-SEG ------------------------------------------------------------------------------------------------
def test_kvasir_counts_and_medvlsm_split():
    data = _load("kvasir_seg")
    assert len(data) == 1000 and data.structures == ("polyp",) and set(data.labels) == {None}
    sizes = {name: len(data.split(name)) for name in ("train", "val", "test")}
    assert sizes == {"train": 800, "val": 100, "test": 100}
    assert set().union(*(data.splits[s] for s in sizes)) == set(data.ids)
    with pytest.raises(InputError, match=r"no split 'validation'; it has \['test', 'train', 'val'\]"):
        data.split("validation")


def test_kvasir_sample():
    test = _load("kvasir_seg").split("test")
    sample = test[0]
    assert sample.image.ndim == 3 and sample.image.shape[2] == 3 and sample.image.dtype == np.uint8
    assert max(sample.hw) <= 384
    mask = sample.masks["polyp"]
    assert mask.dtype == bool and mask.shape == sample.hw and 0 < mask.mean() < 1
    assert sample.meta["split"] == "test" and sample.meta["prompts"]["p1"] == "polyp"
    x0, y0, x1, y1 = sample.meta["bbox"]
    ys, xs = np.nonzero(mask)
    assert abs(xs.min() - x0) <= 3 and abs(ys.max() - y1) <= 3


def test_kvasir_masks_are_lossy_jpeg_made_binary():
    data = _load("kvasir_seg")
    path = data.records[0].masks["polyp"]
    raw = np.asarray(Image.open(path))
    assert raw.ndim == 3 and len(np.unique(raw)) > 2  # JPEG noise around 0 and 255
    with pytest.raises(InputError, match=re.escape(path.name) + r": mask is a lossy JPEG.*threshold=128"):
        read_mask(path)  # strict by default: the file alone is not binary...
    mask = read_mask(path, threshold=128)  # ...the reader's explicit choice, recorded on each record
    assert data.records[0].mask_threshold == 128
    assert mask.dtype == bool and np.array_equal(mask, raw.mean(axis=2) >= 128)
    assert np.array_equal(data.mask(0), mask)


# -- BUS-BRA ---------------------------------------------------------------------------------------------------
def test_busbra_counts_labels_and_folds():
    data = _load("busbra")
    assert len(data) == 1875 and data.structures == ("lesion",)
    assert collections.Counter(data.labels) == {"benign": 1268, "malignant": 607}
    birads = _load("busbra", label="birads")
    assert collections.Counter(birads.labels) == {"2": 562, "3": 463, "4": 693, "5": 157}
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 1200, "val": 299, "test": 376}
    train_val, test = data.fold(1)
    assert len(test) == 376 and len(train_val) == 1499 and test.ids == data.splits["test"]
    cases = {r.id: r.meta["case"] for r in data.records}
    assert not {cases[i] for i in test.ids} & {cases[i] for i in train_val.ids}  # patient-wise
    assert sum(len(data.fold(k)[1]) for k in range(1, 6)) == 1875
    with pytest.raises(InputError, match=r"has folds \[1, 2, 3, 4, 5\], not 6"):
        data.fold(6)
    with pytest.raises(InputError, match="label must be one of"):
        _load("busbra", label="grade")


def test_busbra_sample():
    sample = _load("busbra").get("bus_0001-l")
    assert sample.image.shape == (256, 199) and sample.image.dtype == np.uint8
    mask = sample.masks["lesion"]
    assert mask.dtype == bool and mask.shape == sample.hw and mask.any()
    assert sample.label == "malignant" and sample.meta["birads"] == 4 and sample.meta["kfold"] == 3
    assert sample.meta["bbox"] == [66.0, 17.0, 141.0, 74.0]  # [x, y, w, h] = [66, 17, 75, 57] as XYXY
    ys, xs = np.nonzero(mask)
    assert abs(xs.min() - 66) <= 1 and abs(xs.max() + 1 - 141) <= 1 and abs(ys.max() + 1 - 74) <= 1
    assert sample.meta["path"].endswith("bus_0001-l.png")


# -- JSRT ------------------------------------------------------------------------------------------------------
def test_jsrt_counts_labels_and_parity_split():
    data = _load("jsrt")
    assert len(data) == 247
    assert data.structures == ("left_lung", "right_lung", "heart", "left_clavicle", "right_clavicle")
    assert all(len(r.masks) == 5 for r in data.records)
    assert collections.Counter(data.labels) == {"nodule": 154, "normal": 93}
    train, test = data.split("train"), data.split("test")
    assert len(train) + len(test) == 247 and "JPCLN001" in train and "JPCLN002" in test
    assert all(int(i[5:]) % 2 == 1 for i in train.ids) and all(int(i[5:]) % 2 == 0 for i in test.ids)


def _lungs_and_heart(sample):
    lungs = sample.masks["left_lung"] | sample.masks["right_lung"]
    return sample.image[lungs].mean(), sample.image[sample.masks["heart"]].mean()


def test_jsrt_samples_have_dark_lungs():
    data = _load("jsrt")
    for sample in (data[0], data.get("JPCNN050"), data.get("JPCLN122")):
        assert sample.image.shape == (384, 384) and sample.image.dtype == np.uint8
        assert all(m.shape == sample.hw and m.dtype == bool and m.any() for m in sample.masks.values())
        lungs, heart = _lungs_and_heart(sample)
        assert lungs < heart
        assert sample.meta["inverted_on_disk"] is False  # this copy has normal polarity
    assert data.get("JPCLN122").meta["low_contrast"] and not data[0].meta["low_contrast"]


def test_jsrt_inverted_copy_is_detected_and_normalised(tmp_path):
    """Write one radiograph inverted (air bright) in the JSRT layout: the reader must flip it back."""
    src = data_root("jsrt") / "JSRT"
    dst = tmp_path / "jsrt" / "JSRT"
    (dst / "jsrt_images" / "images").mkdir(parents=True)
    original = np.asarray(Image.open(src / "jsrt_images" / "images" / "JPCNN050.IMG.png"))
    Image.fromarray(255 - original).save(dst / "jsrt_images" / "images" / "JPCNN050.IMG.png")
    for structure in ("left_lung", "right_lung", "heart", "left_clavicle", "right_clavicle"):
        (dst / "masks" / "masks" / structure).mkdir(parents=True)
        shutil.copy(src / "masks" / "masks" / structure / "JPCNN050.gif", dst / "masks" / "masks" / structure)
    sample = load_dataset("jsrt", root=tmp_path)[0]
    assert sample.meta["inverted_on_disk"] is True and sample.label == "normal"
    assert np.array_equal(sample.image, original)
    lungs, heart = _lungs_and_heart(sample)
    assert lungs < heart


# -- roots, lookup, errors -------------------------------------------------------------------------------------
def test_find_datasets_and_list():
    root = data_root("busbra").parent
    assert find_datasets(root) == {"busbra": 1875, "jsrt": 247, "kvasir_seg": 1000}
    assert list_datasets() == ["busbra", "folder", "jsrt", "kvasir_seg"]
    assert roiprompt.load_dataset is load_dataset


def test_root_may_be_the_dataset_folder_itself():
    assert len(load_dataset("jsrt", root=data_root("jsrt"))) == 247


def test_default_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ROIPROMPT_DATA", str(tmp_path))
    assert default_root() == tmp_path
    with pytest.raises(DataError, match=rf"dataset 'kvasir_seg' not found under {tmp_path}: .*kvasir_seg does not "
                                        r"exist\. Get it from https://datasets\.simula\.no.*ROIPROMPT_DATA"):
        load_dataset("kvasir_seg")
    monkeypatch.delenv("ROIPROMPT_DATA")
    assert default_root() != tmp_path


def test_unknown_dataset_name_or_option():
    with pytest.raises(InputError, match=r"unknown dataset 'kvasir'; did you mean 'kvasir_seg'\? available"):
        load_dataset("kvasir")
    with pytest.raises(InputError, match=r"dataset 'jsrt' does not take option\(s\) \['label'\]; it accepts none"):
        load_dataset("jsrt", label="birads")


def test_lazy_dataset_api():
    data = _load("busbra")
    part = data[10:13]
    assert isinstance(part, Dataset) and part.ids == data.ids[10:13]
    assert data.subset([5, 2]).ids == [data.ids[5], data.ids[2]]
    assert data[-1].id == data.ids[-1] and data.index("bus_0001-r") == 1
    assert "bus_0001-l" in data and "nope" not in data
    with pytest.raises(IndexError):
        data[1875]
    with pytest.raises(InputError, match=r"no sample 'bus_0001-x'; did you mean"):
        data.get("bus_0001-x")
    train = data.split("train")
    assert train.split("train").ids == train.ids and "test" in train.splits and not train.splits["test"]
    assert "1875 samples" in repr(data)
