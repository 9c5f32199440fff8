"""The CLI end to end on bad inputs of every class, NIfTI volumes and label maps: good files finish, bad ones are
reported, the exit status tells which happened."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roiprompt.cli import main
from tests.cli import _corpus
from tests.conftest import data_root
from tests.data._make import disc, save_nifti, save_pil

BOX = ["40", "40", "180", "200"]


def busbra(n: int) -> list[Path]:
    return sorted((data_root("busbra") / "BUSBRA" / "Images").glob("bus_*.png"))[:n]


def busbra_mask(image: Path) -> Path:
    return data_root("busbra") / "BUSBRA" / "Masks" / image.name.replace("bus_", "mask_", 1)


def rows(out: Path) -> list[dict]:
    with open(out / "predictions.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("command", ["segment", "oneshot"])
def test_bad_input_corpus_finishes_the_good_files_and_exits_1(tmp_path, command, capsys):
    sources = busbra(len(_corpus.GOOD_NAMES) + 1)
    folder = tmp_path / "study"
    good, bad = _corpus.build(folder, sources[1:])
    out = tmp_path / "out"
    if command == "segment":
        argv = ["segment", str(folder), "--box", *BOX]
    else:
        argv = ["oneshot", "--reference", str(sources[0]), "--reference-mask", str(busbra_mask(sources[0])),
                "--images", str(folder), "--method", "persam"]
    code = main([*argv, "--out", str(out), "--backbone", "test-litemedsam"])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "Traceback" not in captured.out + captured.err
    done = sorted(r["image"] for r in rows(out))
    assert done == sorted(good)  # every good file, under its own name (a comma and quotes parse back)
    assert len(list((out / "masks").glob("*.png"))) == len(good)
    skipped = captured.out[captured.out.index("skipped " + str(len(bad))):]
    for name in bad:  # each bad file is listed with the reader's reason
        assert name in skipped, name
    for reason in ("over the limit", "16-bit", "alpha channel", "RescaleSlope is 'one'", "3-D volume",
                   "not valid UTF-8", "cannot read image"):
        assert reason in skipped, reason
    # a rerun resumes: nothing to do but the bad files, the same exit status, the same outputs
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main([*argv, "--out", str(out), "--backbone", "test-litemedsam"]) == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_nifti_slices_and_volume_masks(tmp_path):
    """--slice all runs every slice; the masks come back as a volume in the input's grid and affine."""
    import nibabel as nib

    image = np.asarray(Image.open(busbra(1)[0]).convert("L"))[:160, :150]
    vol = np.stack([image, np.roll(image, 3, axis=1), np.roll(image, -3, axis=0)], axis=2).astype(np.int16)
    affine = np.array([[-0.5, 0, 0, 10], [0, -0.5, 0, 20], [0, 0, 3.0, -5], [0, 0, 0, 1]])
    folder = tmp_path / "vols"
    path = save_nifti(folder / "case.nii.gz", vol.swapaxes(0, 1), affine=affine)  # voxels [x, y, z]
    out = tmp_path / "out"
    assert main(["segment", str(folder), "--slice", "all", "--box", "20", "20", "120", "130", "--out", str(out),
                 "--backbone", "test-litemedsam"]) == 0
    table = rows(out)
    assert [(r["image"], r["slice"]) for r in table] == [("case.nii.gz", f"z={k}") for k in range(3)]
    assert sorted(p.name for p in (out / "masks").iterdir()) == [
        "case_roi.nii.gz", "case_z000_roi.png", "case_z001_roi.png", "case_z002_roi.png"]
    written = nib.load(str(out / "masks" / "case_roi.nii.gz"))
    assert np.allclose(written.affine, affine) and written.shape == nib.load(str(path)).shape
    from roiprompt.data import read_mask

    for k in range(3):  # the volume holds each slice's PNG mask where that slice was read from
        png = read_mask(out / "masks" / f"case_z{k:03d}_roi.png", allow_empty=True)
        assert np.array_equal(read_mask(out / "masks" / "case_roi.nii.gz", slice=k, allow_empty=True), png)
    # without --slice the volume is refused, naming the option
    out2 = tmp_path / "out2"
    assert main(["segment", str(folder), "--box", *BOX, "--out", str(out2), "--backbone", "test-litemedsam"]) == 1


def test_reference_label_map_and_mask_threshold(tmp_path, capsys):
    """A label map gives several structures (--labels); a soft mask needs --mask-threshold, and says so."""
    ref = busbra(1)[0]
    image = np.asarray(Image.open(ref))
    h, w = image.shape[:2]
    labels = np.zeros((h, w), np.uint8)
    labels[disc(h, w, h / 3, w / 3, 20)] = 1
    labels[disc(h, w, 2 * h / 3, 2 * w / 3, 25)] = 2
    label_map = save_pil(tmp_path / "labels.png", labels)
    targets = tmp_path / "targets"
    targets.mkdir()
    for src in busbra(3)[1:]:
        shutil.copy(src, targets / src.name)
    base = ["oneshot", "--reference", str(ref), "--images", str(targets), "--method", "persam",
            "--backbone", "test-litemedsam"]
    assert main([*base, "--reference-mask", str(label_map), "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "labels.png: mask is not binary: it has 3 distinct values (0, 1, 2)" in err and "--labels V=NAME" in err
    out = tmp_path / "out"
    assert main([*base, "--reference-mask", str(label_map), "--labels", "1=cyst,2=mass", "--out", str(out)]) == 0
    assert sorted({r["structure"] for r in rows(out)}) == ["cyst", "mass"]
    soft = save_pil(tmp_path / "soft.png", np.round(disc(h, w, h / 2, w / 2, 30) * 200 + 20).astype(np.uint8))
    assert main([*base, "--reference-mask", str(soft), "--out", str(tmp_path / "soft_refused")]) == 2
    assert "--mask-threshold T" in capsys.readouterr().err
    assert main([*base, "--reference-mask", str(soft), "--mask-threshold", "128", "--out",
                 str(tmp_path / "soft_out")]) == 0


def test_oneshot_through_a_volume_from_one_annotated_slice(tmp_path):
    """The README's volume example: reference slice 1 of a label-map volume, every other slice a target."""
    import nibabel as nib

    image = np.asarray(Image.open(busbra(1)[0]).convert("L"))[:120, :100]
    vol = np.stack([np.roll(image, 2 * k, axis=1) for k in range(4)], axis=2).astype(np.int16)
    seg = np.zeros(vol.shape, np.uint8)
    seg[30:80, 20:70, :] = 1
    seg[90:110, 10:40, :] = 2
    ct = save_nifti(tmp_path / "ct.nii.gz", vol.swapaxes(0, 1), affine=np.diag([-1.0, -1.0, 2.0, 1.0]))
    labels = save_nifti(tmp_path / "seg.nii.gz", seg.swapaxes(0, 1), affine=np.diag([-1.0, -1.0, 2.0, 1.0]))
    out = tmp_path / "out"
    assert main(["oneshot", "--reference", str(ct), "--reference-slice", "1", "--reference-mask", str(labels),
                 "--labels", "1=liver,2=spleen", "--images", str(ct), "--slice", "all", "--method", "persam",
                 "--backbone", "test-litemedsam", "--out", str(out)]) == 0
    table = rows(out)
    assert sorted({r["slice"] for r in table}) == ["z=0", "z=2", "z=3"]  # the reference slice is not a target
    for name in ("liver", "spleen"):
        written = nib.load(str(out / "masks" / f"ct_{name}.nii.gz"))
        assert written.shape == nib.load(str(ct)).shape and np.allclose(written.affine, nib.load(str(ct)).affine)
        assert not np.asarray(written.dataobj)[:, :, 1].any()  # nothing predicted on the reference slice
