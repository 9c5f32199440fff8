"""The app's HTTP API over real files: what it lists, what it refuses, where it writes, what it exports.

These run the tiny random ``test-litemedsam`` (the masks are not the point here); the browser test
(``test_browser.py``) runs the real LiteMedSAM on real images.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from roiprompt.app import Served, Session, Study
from roiprompt.app.export import label_map
from roiprompt.data import read_mask
from roiprompt.data.nifti import read_nifti_slice

from ._served import call, multipart


def _disc(hw: tuple[int, int], centre: tuple[int, int], r: int) -> np.ndarray:
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r * r


def _study(folder: Path, n: int = 4) -> Path:
    """``n`` 96x128 grey images with a bright disc that moves a little, plus one corrupt PNG (listed last)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        img = (rng.normal(60, 10, (96, 128)) + 120 * _disc((96, 128), (40 + 2 * k, 60 + 3 * k), 18)).clip(0, 255)
        Image.fromarray(img.astype(np.uint8)).save(folder / f"img{k}.png")
    (folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return folder


def _session(tmp_path: Path, **kw) -> Session:
    study = Study(_study(tmp_path / "study"))
    return Session(study, tmp_path / "out", method=kw.pop("method", "persam"), backbone="test-litemedsam", **kw)


def _png(mask: np.ndarray) -> bytes:
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[mask] = 255
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    return buffer.getvalue()


def test_study_lists_every_image_and_names_the_unreadable_one(tmp_path):
    session = _session(tmp_path)
    session.load_study()
    assert session.wait(60)["state"] == "done"
    states = {s["name"]: s for s in (session.image_state(img.id) for img in session.study.images)}
    assert sorted(states) == ["img0.png", "img1.png", "img2.png", "img3.png", "zz_broken.png"]
    broken = states["zz_broken.png"]
    assert broken["state"] == "error" and "zz_broken.png" in broken["error"]
    img0 = session.study.images[states["img0.png"]["id"]]
    assert states["img0.png"]["size"] == [128, 96] and img0.thumb[:2] == b"\xff\xd8"  # a JPEG thumbnail


def test_paths_stay_inside_the_study_and_the_output_folder(tmp_path):
    session = _session(tmp_path)
    with Served(session) as url:
        # the static route serves the page's files and nothing above them
        assert call(f"{url}/static/app.js")[0] == 200
        for probe in ("/static/..%2f..%2f..%2fpyproject.toml", "/static/%2e%2e/%2e%2e/session.py",
                      "/static/../server.py"):
            status, _ = call(url + probe)
            assert status == 404, probe
        # images are ids of the study listing, never paths
        status, body = call(f"{url}/api/images/99/image.png")
        assert status == 400 and b"no image 99" in body
        assert call(f"{url}/api/images/..%2f..%2fetc%2fpasswd/image.png")[0] in (404, 422)  # no route, or not an id
        # an uploaded file lands in the study folder under a cleaned name, whatever name the browser sent
        png = (tmp_path / "study" / "img0.png").read_bytes()
        body, ctype = multipart("files", [("../../escaped.png", png), ("..\\..\\win.png", png), ("run.sh", b"x")])
        status, reply = call(f"{url}/api/upload", "POST", raw=body, content_type=ctype)
        reply = json.loads(reply)
        assert status == 200 and reply["saved"] == ["escaped.png", "win.png"]
        assert "run.sh" in reply["errors"][0] and "not an image" in reply["errors"][0]
        assert (tmp_path / "study" / "escaped.png").is_file() and not (tmp_path / "escaped.png").exists()
        assert not any(p.name == "run.sh" for p in tmp_path.rglob("*"))
        # a mask file's name is never used as a path
        mask = np.zeros((96, 128), np.uint8)
        mask[10:30, 10:40] = 255
        buffer = io.BytesIO()
        Image.fromarray(mask).save(buffer, format="PNG")
        body, ctype = multipart("file", [("../../../outside_mask.png", buffer.getvalue())])
        status, reply = call(f"{url}/api/images/0/masks/heart/file", "POST", raw=body, content_type=ctype)
        assert status == 200 and json.loads(reply)["area"] == 600
        assert not any(p.name == "outside_mask.png" for p in tmp_path.parent.rglob("outside_mask.png"))
        # structure names become file names: refused when they could be paths
        status, reply = call(f"{url}/api/structures", "POST", {"name": "../x"})
        assert status == 400 and b"structure name" in reply
        # another site's page cannot reach the app through a DNS name pointing at 127.0.0.1
        assert call(f"{url}/api/state", headers={"Host": "evil.example"})[0] == 400
        assert call(f"{url}/api/state")[0] == 200


def test_uploads_are_capped_in_bytes_and_pixels(tmp_path, monkeypatch):
    import roiprompt.app.server
    import roiprompt.app.study

    monkeypatch.setattr(roiprompt.app.study, "MAX_UPLOAD_BYTES", 2000)
    monkeypatch.setattr(roiprompt.app.server, "MAX_UPLOAD_BYTES", 2000)
    monkeypatch.setenv("ROIPROMPT_MAX_PIXELS", "10000")
    session = _session(tmp_path)
    with Served(session) as url:
        body, ctype = multipart("files", [("big.png", b"\0" * 3000)])
        reply = json.loads(call(f"{url}/api/upload", "POST", raw=body, content_type=ctype)[1])
        assert reply["saved"] == [] and "over the limit" in reply["errors"][0]
        session.load_study()
        session.wait(60)
        state = json.loads(call(f"{url}/api/state")[1])
        too_big = [i for i in state["images"] if i["name"] == "img0.png"][0]  # 96x128 = 12,288 px > 10,000
        assert too_big["state"] == "error" and "limit" in too_big["error"]


def test_painted_masks_accept_and_export_png_nifti_csv_reference_report(tmp_path):
    from roiprompt import load_fitted

    session = _session(tmp_path)
    hw = (96, 128)
    first, second = _disc(hw, (40, 60), 18), _disc(hw, (44, 66), 18)
    lung = np.zeros(hw, bool)
    lung[60:90, 5:40] = True
    with Served(session) as url:
        for image_id, structure, mask in ((0, "heart", first), (0, "lung", lung), (2, "heart", second)):
            status, reply = call(f"{url}/api/images/{image_id}/masks/{structure}", "PUT", raw=_png(mask))
            assert status == 200 and json.loads(reply)["area"] == mask.sum()
        status, reply = call(f"{url}/api/images/2/accept", "POST")
        assert status == 400 and b"draw lung" in reply  # every reference needs every structure
        assert call(f"{url}/api/images/0/accept", "POST")[0] == 200
        status, reply = call(f"{url}/api/images/0/masks/heart.png")
        assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(reply))) > 0, first)
        status, reply = call(f"{url}/api/images/1/masks/heart", "PUT", raw=_png(np.ones((10, 10), bool)))
        assert status == 400 and b"10x10" in reply
        status, reply = call(f"{url}/api/export", "POST")
        assert status == 200, reply
    out = tmp_path / "out"
    exported = json.loads(reply)
    assert exported["images"] == 2 and exported["labels"] == {"heart": 1, "lung": 2}
    assert np.array_equal(read_mask(out / "masks" / "img0_heart.png"), first)
    assert np.array_equal(read_mask(out / "masks" / "img2_heart.png"), second)
    labels = read_nifti_slice(out / "labelmaps" / "img0.nii.gz")
    assert np.array_equal(labels, label_map({"heart": first, "lung": lung}, ["heart", "lung"]))
    assert nib.load(out / "labelmaps" / "img0.nii.gz").get_data_dtype() == np.uint8
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["image"], r["structure"], r["source"]) for r in rows] == [
        ("img0.png", "heart", "reference"), ("img0.png", "lung", "reference"), ("img2.png", "heart", "corrected")]
    fitted = load_fitted(out / "reference", backbone="test-litemedsam")
    assert fitted.structures == ["heart", "lung"] and len(fitted.references) == 1
    html = (out / "report.html").read_text()
    assert "img0" in html and "<script" not in html and "http://" not in html and "https://" not in html
    # a later session starts from the exported reference: shown accepted, propagated without refitting
    later = Session(Study(tmp_path / "study"), tmp_path / "out2", backbone="test-litemedsam")
    assert later.load_references(out / "reference") == [0] and later.method_name == "persam"
    assert later.structures == ["heart", "lung"] and np.array_equal(later.accepted[0]["heart"], first)
    loaded = later.fitted
    later.propagate()
    assert later.wait(300)["state"] == "done" and later.fitted is loaded and sorted(later.results) == [1, 2, 3]


def test_propagation_fills_results_and_never_overwrites_accepted_images(tmp_path):
    session = _session(tmp_path)
    hw = (96, 128)
    session.set_mask(0, "blob", _disc(hw, (40, 60), 18))
    session.accept(0)
    accepted = session.accepted[0]["blob"].copy()
    session.propagate()
    job = session.wait(300)
    assert job["state"] == "done" and job["done"] == job["total"] == 4  # 3 images and the corrupt one
    assert "zz_broken.png" in session.failed[4]  # reported, not fatal
    assert sorted(session.results) == [1, 2, 3] and np.array_equal(session.accepted[0]["blob"], accepted)
    # a correction, accepted: a second reference; propagating again refits on both and leaves both alone
    corrected = _disc(hw, (46, 69), 17)
    session.set_mask(3, "blob", corrected)
    session.accept(3)
    session.propagate()
    assert session.wait(300)["state"] == "done"
    assert len(session.fitted.references) == 2 and np.array_equal(session.masks(3)["blob"], corrected)
    assert np.array_equal(session.masks(0)["blob"], accepted) and sorted(session.results) == [1, 2, 3]
    states = {session.image_state(i)["state"] for i in (1, 2)}
    assert states == {"result"}


def test_a_box_gives_a_mask_preview_on_the_interactive_model(tmp_path):
    session = _session(tmp_path)
    reply = session.segment(1, "blob", box=[40, 20, 90, 70])
    assert reply["area"] == session.masks(1)["blob"].sum() and session.masks(1)["blob"].shape == (96, 128)
    with pytest.raises(Exception, match="draw a box"):
        session.segment(2, "blob")


def test_classify_labels_train_predict_and_export(tmp_path):
    """The classify tab's API: labels from a CSV (unknown names reported), a refused one-class fit, a fit with
    progress, predictions for the unlabelled images, and an export the CLI and ``load_fitted`` read back."""
    import roiprompt

    session = _session(tmp_path, classifier_config={"views": 1, "epochs": 5, "min_steps": 10})
    hw = (96, 128)
    for k in range(4):  # every image gets an ROI (two drawn structures: their union), as propagation would give
        session.set_mask(k, "lesion", _disc(hw, (40 + 2 * k, 60 + 3 * k), 18))
        session.set_mask(k, "rim", _disc(hw, (40 + 2 * k, 60 + 3 * k), 24) & ~_disc(hw, (40 + 2 * k, 60 + 3 * k), 18))
    with Served(session) as url:
        body, ctype = multipart("file", [("labels.csv", b"image,label\nimg0.png,benign\n")])
        assert json.loads(call(f"{url}/api/classify/labels", "POST", raw=body, content_type=ctype)[1])["set"] == 1
        status, text = call(f"{url}/api/classify/train", "POST", {"method": "linear_probe_masked"})
        assert status == 400 and b"at least two classes" in text
        body, ctype = multipart("file", [("mine.csv", b"file,colour\nimg0.png,red\n")])
        status, text = call(f"{url}/api/classify/labels", "POST", raw=body, content_type=ctype)
        assert status == 400 and b"mine.csv" in text and b"label" in text
        body, ctype = multipart("file", [("labels.csv", b"id,label\nimg1,malignant\nnope.png,benign\n")])
        loaded = json.loads(call(f"{url}/api/classify/labels", "POST", raw=body, content_type=ctype)[1])
        assert loaded == {"set": 1, "unknown": ["nope.png"]}
        assert call(f"{url}/api/images/2/label", "PUT", {"label": "bad/label"})[0] == 400
        status, text = call(f"{url}/api/classify/train", "POST", {"method": "resnet"})
        assert status == 400 and b"linear_probe_masked" in text
        assert call(f"{url}/api/classify/train", "POST", {"method": "linear_probe_masked"})[0] == 200
        job = session.wait(120)
        assert job["state"] == "done" and job["kind"] == "training" and job["steps"] >= 10, job
        assert call(f"{url}/api/classify/predict", "POST")[0] == 200
        assert session.wait(120)["state"] == "done"
        state = json.loads(call(f"{url}/api/state")[1])["classify"]
        assert state["trained_on"] == [0, 1] and state["labels"] == {"0": "benign", "1": "malignant"}
        assert sorted(state["predictions"]) == ["2", "3"]  # the unlabelled readable images; the broken one is not
        for p in state["predictions"].values():
            assert set(p["scores"]) == {"benign", "malignant"} and abs(sum(p["scores"].values()) - 1) < 1e-5
            assert p["label"] == max(p["scores"], key=p["scores"].get)
        status, text = call(f"{url}/api/images/2/attention.png")
        assert status == 400 and b"medfocusclip" in text
        exported = json.loads(call(f"{url}/api/classify/export", "POST")[1])
    rows = list(csv.DictReader((tmp_path / "out" / "classification" / "predictions.csv").open()))
    assert [r["image"] for r in rows] == ["img0.png", "img1.png", "img2.png", "img3.png"] and exported["rows"] == 4
    assert [r["source"] for r in rows] == ["labelled", "labelled", "predicted", "predicted"]
    assert rows[0]["label"] == "benign" and rows[0]["p_benign"] == "" and rows[2]["roi"] == "lesion+rim"
    p2 = state["predictions"]["2"]["scores"]["malignant"]
    assert abs(float(rows[2]["p_malignant"]) - p2) < 1e-4
    reloaded = roiprompt.load_fitted(tmp_path / "out" / "classification" / "model", backbone="test-litemedsam")
    union = session.masks(2)["lesion"] | session.masks(2)["rim"]
    pred = reloaded.predict(session.study.read(2), mask=union)
    assert abs(pred.scores["malignant"] - p2) < 1e-5  # the saved classifier predicts what the page showed
    # the CLI reads the app's export: the saved classifier over the study, the ROI from the exported masks
    from roiprompt.cli import main

    session.export(("png", "nifti", "csv"))
    assert main(["classify", "predict", "--model", str(tmp_path / "out" / "classification" / "model"),
                 "--images", str(tmp_path / "study"), "--masks", str(tmp_path / "out" / "masks"),
                 "--out", str(tmp_path / "cli")]) == 1  # 1: the broken image is reported and skipped
    cli = {r["image"]: r for r in csv.DictReader((tmp_path / "cli" / "predictions.csv").open())}
    assert abs(float(cli["img2.png"]["p_malignant"]) - p2) < 1e-4
    assert cli["img2.png"]["roi"]  # the exported masks/<stem>_<structure>.png, united


def test_dicom_inputs_export_dicom_seg_that_highdicom_reads_back(tmp_path):
    """A DICOM image's masks go out as DICOM-SEG too (one segment per structure, on its pixel grid, referencing
    it); a DICOM without its study UID gets PNG and NIfTI masks and a warning naming it, not an error."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    from tests.data._make import save_dicom

    folder = tmp_path / "study"
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 4000, (96, 128)).astype(np.uint16)
    good = save_dicom(folder / "ct1.dcm", pixels, StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid(),
                      PatientID="anon", Modality="CT")
    save_dicom(folder / "bare.dcm", pixels)  # no study or series UID
    session = Session(Study(folder), tmp_path / "out", method="persam", backbone="test-litemedsam")
    ids = {img.name: img.id for img in session.study.images}
    heart, lung = _disc((96, 128), (40, 50), 15), _disc((96, 128), (50, 90), 20)
    for name in ("ct1.dcm", "bare.dcm"):
        session.set_mask(ids[name], "heart", heart)
        session.set_mask(ids[name], "lung", lung)
    result = session.export(("png", "nifti", "dicomseg", "csv"))
    assert len(result["warnings"]) == 1 and "bare.dcm" in result["warnings"][0]
    assert "StudyInstanceUID" in result["warnings"][0]
    assert (tmp_path / "out" / "masks" / "bare_heart.png").is_file()
    assert not (tmp_path / "out" / "masks" / "bare.seg.dcm").exists()
    seg = hd.seg.segread(tmp_path / "out" / "masks" / "ct1.seg.dcm")
    assert [seg.get_segment_description(k).SegmentLabel for k in seg.get_segment_numbers()] == ["heart", "lung"]
    import pydicom

    uid = pydicom.dcmread(good).SOPInstanceUID
    planes = seg.get_pixels_by_source_instance([uid], segment_numbers=[1, 2])  # (1, H, W, segments)
    assert np.array_equal(planes[0, :, :, 0] > 0, heart) and np.array_equal(planes[0, :, :, 1] > 0, lung)
    assert seg.StudyInstanceUID == pydicom.dcmread(good).StudyInstanceUID and seg.PatientID == "anon"
