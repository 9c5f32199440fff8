"""The "folder" reader on files written to tmp_path in every supported format."""

from __future__ import annotations

import re

import numpy as np
import pytest

from roiprompt.data import load_dataset
from roiprompt.errors import DataError, InputError

from ._make import disc, grey, rgb, save_dicom, save_nifti, save_pil

H, W = 24, 32


@pytest.fixture()
def own_data(tmp_path):
    root = tmp_path / "my_data"
    img = root / "images"
    save_pil(img / "a.png", grey())
    save_pil(img / "b.jpg", rgb(), quality=95)
    save_pil(img / "c.bmp", grey(seed=1))
    save_pil(img / "d.tif", rgb(seed=2))
    save_dicom(img / "e.dcm", grey(seed=3).astype(np.uint16) * 16)
    save_nifti(img / "f.nii.gz", grey(seed=5)[:, :, None].astype(np.float32))  # a 2-D image stored as HxWx1
    save_pil(img / "g.png", grey(seed=4))  # no mask at all
    tumour, organ = disc(), disc(H, W, 8, 8, 4)
    for sid in "abcdef":
        save_pil(root / "masks" / "tumour" / f"{sid}.png", tumour.astype(np.uint8) * 255)
    save_pil(root / "masks" / "organ" / "a.png", organ)  # 1-bit
    save_dicom(root / "masks" / "organ" / "e.dcm", organ.astype(np.uint8))
    save_nifti(root / "masks" / "organ" / "f.nii.gz", organ[:, :, None].astype(np.uint8))
    save_pil(root / "masks" / "organ" / "b.png", np.zeros((H, W), np.uint8))  # an empty mask is allowed
    (root / "labels.csv").write_text("id,label\na,benign\nb,malignant\nc,benign\n")
    return root


def test_folder_layout(own_data):
    data = load_dataset("folder", root=own_data)
    assert data.name == "folder" and data.ids == list("abcdefg")
    assert data.structures == ("organ", "tumour")
    assert data.labels == ["benign", "malignant", "benign", None, None, None, None]
    shapes = {}
    for sample in data:
        assert sample.image.dtype == np.uint8 and sample.hw == (H, W)
        shapes[sample.id] = sample.image.shape
        for mask in sample.masks.values():
            assert mask.dtype == bool and mask.shape == (H, W)
    assert shapes["b"] == (H, W, 3) and shapes["d"] == (H, W, 3) and shapes["e"] == (H, W)
    assert np.array_equal(data.get("a").image, grey()) and np.array_equal(data.get("d").image, rgb(seed=2))
    assert set(data.get("a").masks) == {"organ", "tumour"} and set(data.get("c").masks) == {"tumour"}
    assert np.array_equal(data.get("e").masks["organ"], disc(H, W, 8, 8, 4))
    assert np.array_equal(data.get("f").masks["organ"], disc(H, W, 8, 8, 4))
    assert not data.get("b").masks["organ"].any()
    assert data.get("g").masks == {} and data.get("g").meta["path"].endswith("g.png")
    with pytest.raises(InputError, match="has no official splits"):
        data.split("train")


def test_single_structure_is_roi(tmp_path):
    save_pil(tmp_path / "images" / "x1.png", grey())
    save_pil(tmp_path / "masks" / "x1.png", disc().astype(np.uint8) * 255)
    data = load_dataset("folder", root=tmp_path)
    assert data.structures == ("roi",) and data[0].mask().any()


def test_mask_without_image_is_listed(own_data):
    save_pil(own_data / "masks" / "tumour" / "zz.png", disc().astype(np.uint8) * 255)
    with pytest.raises(DataError, match=r"no image in .*images for 1 \(tumour/zz\) mask\(s\)"):
        load_dataset("folder", root=own_data)


def test_bad_layouts(tmp_path):
    with pytest.raises(InputError, match="needs root=PATH"):
        load_dataset("folder")
    with pytest.raises(DataError, match="no images/ folder"):
        load_dataset("folder", root=tmp_path)
    save_pil(tmp_path / "images" / "a.png", grey())
    save_pil(tmp_path / "images" / "a.jpg", rgb())
    with pytest.raises(DataError, match=r"several files for one id: \['a\.jpg / a\.png'\]"):
        load_dataset("folder", root=tmp_path)
    (tmp_path / "images" / "a.jpg").unlink()
    (tmp_path / "labels.csv").write_text("a,x\nq,y\n")
    with pytest.raises(DataError, match=r"labels\.csv: labels for 1 \(q\) id\(s\) with no file"):
        load_dataset("folder", root=tmp_path)


def test_bad_file_fails_on_access_naming_it(tmp_path):
    save_pil(tmp_path / "images" / "ok.png", grey())
    bad = save_pil(tmp_path / "images" / "cut.png", rgb(64, 64))
    bad.write_bytes(bad.read_bytes()[:150])
    save_pil(tmp_path / "masks" / "ok.png", np.ones((10, 10), np.uint8) * 255)  # wrong size
    data = load_dataset("folder", root=tmp_path)  # listing is fine: nothing is read yet
    with pytest.raises(InputError, match=re.escape(str(bad)) + ": cannot read image"):
        data.get("cut")
    with pytest.raises(InputError, match=r"ok\.png: mask is 10x10 but its image is 24x32"):
        data.get("ok")


def test_folder_masks_are_strict_unless_a_threshold_is_given(tmp_path):
    from roiprompt.data import load_dataset
    from roiprompt.errors import InputError

    root = tmp_path / "jpeg_masks"
    save_pil(root / "images" / "a.png", grey(H, W))
    m = disc(H, W, 12, 16, 8)
    save_pil(root / "masks" / "a.jpg", np.repeat(m[:, :, None].astype(np.uint8) * 255, 3, 2), quality=70)
    with pytest.raises(InputError, match=r"a\.jpg: mask is a lossy JPEG .*threshold=128"):
        load_dataset("folder", root=root)[0]
    sample = load_dataset("folder", root=root, mask_threshold=128)[0]
    assert sample.masks["roi"].sum() > 0.8 * m.sum()
