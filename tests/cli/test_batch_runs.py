"""``segment`` and ``oneshot`` as batch runs: unique output names, the manifest, resume after a kill, exit codes,
and the ``warning`` column. Real BUS-BRA images; the tiny random ``test-litemedsam`` where the masks' quality does
not matter."""

from __future__ import annotations

import csv
import json
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import roiprompt
from roiprompt.cli import main
from roiprompt.batch.inputs import Input
from roiprompt.batch.inputs import output_stems
from tests.conftest import data_root

BOX = ["40", "40", "300", "260"]


def busbra_images(n: int, offset: int = 0) -> list[Path]:
    """``n`` BUS-BRA ultrasound images (PNG files of the official layout)."""
    folder = data_root("busbra") / "BUSBRA" / "Images"
    return sorted(folder.glob("bus_*.png"))[offset: offset + n]


def copy_images(sources, folder: Path, names=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(sources):
        shutil.copyfile(src, folder / (names[i] if names else src.name))
    return folder


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """{relative path: (bytes, mtime_ns)} of every file in ``folder`` but hidden temporaries."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def manifest_entries(folder: Path) -> list[dict]:
    """The complete (newline-terminated) input lines of a manifest."""
    lines = (folder / "manifest.jsonl").read_bytes().split(b"\n")[1:-1]
    return [json.loads(line) for line in lines]


def no_model(*args, **kwargs):
    raise AssertionError("the model must not be loaded")


# -- names ----------------------------------------------------------------------------------------------------
def _stems(paths, structures, **kw) -> list[str]:
    return list(output_stems([Input(Path(p)) for p in paths], structures, **kw).values())


def test_output_stems_rule():
    assert _stems(["d/a.1.png", "d/a.2.png", "d/c.nii.gz", "d/IM.0001"], ["roi"]) == ["a.1", "a.2", "c", "IM.0001"]
    # extensions added; still taken: numbered
    assert _stems(["d/a.jpg", "d/a.png", "d/a_png.bmp"], ["roi"]) == ["a_jpg", "a_png", "a_png_2"]
    # one name in several folders (case ignored, as macOS)
    assert _stems(["x/s.png", "y/s.png", "z/S.png"], ["roi"]) == ["s", "s_2", "S_3"]
    assert _stems(["d/reference.png", "d/b.png"], ["heart"], reserved=["overlays/reference.png"]) == [
        "reference_2", "b"]
    # a stem + structure that would meet another's mask name: a_b + c and a + b_c both give masks/a_b_c.png
    stems = _stems(["d/a.png", "d/a_b.png"], ["b_c", "c"])
    assert len({f"{s}_{t}" for s in stems for t in ("b_c", "c")}) == 4
    # slices of a volume: the axis letter and the index
    slices = [Input(Path("d/case.nii.gz"), k, 2) for k in (0, 12)] + [Input(Path("d/case.png"))]
    assert list(output_stems(slices, ["roi"]).values()) == ["case_nii_gz_z000", "case_nii_gz_z012", "case_png"]


def test_segment_names_keep_dots_and_the_csv_quotes_names(tmp_path):
    names = ["a.1.png", "a.2.png", 'comma, "quoted".png']
    folder = copy_images(busbra_images(3), tmp_path / "in", names)
    out = tmp_path / "out"
    assert main(["segment", str(folder), "--box", *BOX, "--out", str(out), "--backbone", "test-litemedsam"]) == 0
    masks = sorted(p.name for p in (out / "masks").iterdir())
    assert masks == ["a.1_roi.png", "a.2_roi.png", 'comma, "quoted"_roi.png']
    rows = read_csv(out / "predictions.csv")
    assert [r["image"] for r in rows] == sorted(names) and all(r["warning"] == "" for r in rows)
    for r in rows:  # each row is its own mask
        stem = r["image"][: -len(".png")]
        assert int(r["area_px"]) == int((np.array(Image.open(out / "masks" / f"{stem}_roi.png")) > 0).sum())


# -- resume ---------------------------------------------------------------------------------------------------
def busbra_reference(tmp_path: Path) -> tuple[Path, Path]:
    """A BUS-BRA image outside the targets, with its lesion mask."""
    image = busbra_images(1, offset=40)[0]
    mask = image.parents[1] / "Masks" / image.name.replace("bus_", "mask_")
    return shutil.copyfile(image, tmp_path / "ref.png"), shutil.copyfile(mask, tmp_path / "ref_mask.png")


def count_target_predictions(monkeypatch) -> list[str]:
    """Sources of every ``predict_all`` call on the one-shot method the CLI loads."""
    import roiprompt.methods

    calls: list[str] = []
    load = roiprompt.methods.load_method

    def spy(name, **config):
        method = load(name, **config)
        predict_all = method.predict_all

        def counted(image, **kwargs):
            calls.append(kwargs.get("source"))
            return predict_all(image, **kwargs)

        method.predict_all = counted
        return method

    monkeypatch.setattr(roiprompt.methods, "load_method", spy)
    return calls


def test_killed_oneshot_resumes_to_the_same_bytes(tmp_path, monkeypatch):
    n = 12  # an image takes 0.1 to 1 s here: the kill lands with several still to do
    folder = copy_images(busbra_images(n), tmp_path / "targets")
    ref, ref_mask = busbra_reference(tmp_path)
    argv = ["--threads", "2", "--runtime", "eager", "oneshot", "--reference", str(ref), "--reference-mask",
            str(ref_mask), "--images", str(folder), "--method", "persam", "--backbone", "test-litemedsam"]
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(roiprompt.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from roiprompt.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", *argv, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (killed / "manifest.jsonl").is_file() and len(manifest_entries(killed)) >= 2:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    done = len(manifest_entries(killed))
    assert 2 <= done < n, f"the kill landed after {done} of {n} images"

    calls = count_target_predictions(monkeypatch)
    assert main([*argv, "--out", str(killed)]) == 0
    assert len(calls) == n - done  # only the images without a manifest line were predicted again
    assert sorted(Path(c).name for c in calls) == sorted(p.name for p in folder.iterdir())[done:]

    calls.clear()
    fresh = tmp_path / "fresh"
    assert main([*argv, "--out", str(fresh)]) == 0
    assert len(calls) == n
    resumed, uninterrupted = snapshot(killed), snapshot(fresh)
    assert sorted(resumed) == sorted(uninterrupted)
    assert len([k for k in resumed if k.startswith("masks/")]) == n
    different = [k for k in resumed if resumed[k][0] != uninterrupted[k][0]]
    assert different == []  # masks, overlays, predictions.csv and manifest.jsonl: byte for byte
    assert len(read_csv(killed / "predictions.csv")) == n
    assert list(killed.rglob(".*")) == []  # temporaries the kill left behind are cleared


def test_rerun_over_a_finished_run_loads_no_model_and_changes_no_file(tmp_path, monkeypatch, capsys):
    import roiprompt.models.backbones
    import roiprompt.predictor

    folder = copy_images(busbra_images(3), tmp_path / "in")
    out = tmp_path / "out"
    argv = ["segment", str(folder), "--box", *BOX, "--out", str(out), "--backbone", "test-litemedsam"]
    assert main(argv) == 0
    before = snapshot(out)
    assert set(before) == {"manifest.jsonl", "predictions.csv", *(f"masks/{p.stem}_roi.png" for p in
                                                                    folder.iterdir()),
                           *(f"overlays/{p.name}" for p in folder.iterdir())}
    with monkeypatch.context() as m:
        m.setattr(roiprompt.models.backbones, "load_backbone", no_model)
        assert main(argv) == 0
        assert "3 of them done by an earlier run" in capsys.readouterr().out
        assert snapshot(out) == before  # not one file rewritten

        # other settings into the same folder: refused, nothing touched
        assert main([*argv, "--box", "10", "10", "200", "200"]) == 2  # the last --box wins
        err = capsys.readouterr().err
        assert "other settings" in err and "--overwrite" in err and "box" in err
        assert snapshot(out) == before

    # a torn last manifest line, a lost mask, a stale mask and a stale CSV row: the rerun redoes one image
    with open(out / "manifest.jsonl", "ab") as f:
        f.write(b'{"input":"' + str(folder).encode() + b'/x.png","outputs":{"masks/x_r')
    lost = sorted((out / "masks").iterdir())[1]
    lost.unlink()
    (out / "masks" / "old_roi.png").write_bytes(b"a mask of an earlier run, not in the manifest")
    with open(out / "predictions.csv", "a") as f:
        f.write("old.png,roi,0.5,0.5,12,\n")
    encoded = []
    set_image = roiprompt.predictor.SamPredictor.set_image
    monkeypatch.setattr(roiprompt.predictor.SamPredictor, "set_image",
                        lambda self, image, **kw: (encoded.append(kw.get("source")), set_image(self, image, **kw))[1])
    assert main(argv) == 0
    assert [Path(s).stem for s in encoded] == [lost.name[: -len("_roi.png")]]
    after = snapshot(out)
    assert {k: v[0] for k, v in after.items() if k != "masks/old_roi.png"} == {k: v[0] for k, v in before.items()}
    assert "old.png" not in (out / "predictions.csv").read_text()  # stale outputs never reach the table

    # --overwrite replaces the run with other settings
    encoded.clear()
    assert main([*argv, "--overwrite", "--point", "150", "150"]) == 0
    assert len(encoded) == 3
    assert json.loads((out / "manifest.jsonl").read_text().splitlines()[0])["settings"]["points"] == [[150, 150]]


def test_a_run_that_finished_nothing_does_not_hold_the_folder(tmp_path, capsys):
    folder = copy_images(busbra_images(1), tmp_path / "in")
    argv = ["segment", str(folder), "--box", *BOX, "--out", str(tmp_path / "out"), "--backbone", "test-litemedsam"]
    assert main([*argv, "--weights", str(tmp_path / "missing.pth")]) == 2  # fails at the model, after the check
    assert "missing.pth" in capsys.readouterr().err
    assert main(argv) == 0  # other settings, but nothing to mix with


# -- exit codes -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` read-only for this process: permissions, or, for root (who ignores them), the immutable
    attribute, which binds root too."""
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if as_root:
        try:
            done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        except FileNotFoundError:
            pytest.skip("running as root without chattr: no way to make a folder read-only for root")
        if done.returncode != 0:  # e.g. tmpfs, which has no immutable attribute; --out as a file is tested below
            pytest.skip(f"running as root on a file system without chattr +i ({done.stderr.decode().strip()})")
    else:
        folder.chmod(0o555)
    try:
        yield folder
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


def test_read_only_output_folder_is_refused_before_the_model_loads(tmp_path, monkeypatch, capsys):
    import roiprompt.methods
    import roiprompt.models.backbones

    monkeypatch.setattr(roiprompt.models.backbones, "load_backbone", no_model)
    monkeypatch.setattr(roiprompt.methods, "load_method", no_model)
    folder = copy_images(busbra_images(2), tmp_path / "in")
    out = tmp_path / "read_only"
    out.mkdir()
    ref, ref_mask = busbra_reference(tmp_path)
    with read_only(out):
        assert main(["segment", str(folder), "--box", *BOX, "--out", str(out)]) == 2
        assert "cannot write" in capsys.readouterr().err
        assert main(["oneshot", "--reference", str(ref), "--reference-mask", str(ref_mask), "--images", str(folder),
                     "--out", str(out / "sub")]) == 2
        assert "cannot write" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_unwritable_output_path_is_refused_before_the_model_loads(tmp_path, monkeypatch, capsys):
    """The same check where permissions cannot be used (root): --out is a file."""
    import roiprompt.methods
    import roiprompt.models.backbones

    monkeypatch.setattr(roiprompt.models.backbones, "load_backbone", no_model)
    monkeypatch.setattr(roiprompt.methods, "load_method", no_model)
    folder = copy_images(busbra_images(2), tmp_path / "in")
    out = tmp_path / "a_file"
    out.write_text("not a folder")
    assert main(["segment", str(folder), "--box", *BOX, "--out", str(out)]) == 2
    assert "cannot write" in capsys.readouterr().err
    ref, ref_mask = busbra_reference(tmp_path)
    assert main(["oneshot", "--reference", str(ref), "--reference-mask", str(ref_mask), "--images", str(folder),
                 "--out", str(out)]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert out.read_text() == "not a folder"


def test_an_internal_error_on_one_image_is_logged_and_the_rest_done(tmp_path, monkeypatch, capsys):
    import roiprompt.predictor

    folder = copy_images(busbra_images(3), tmp_path / "in")
    broken = sorted(folder.iterdir())[1]
    set_image = roiprompt.predictor.SamPredictor.set_image

    def flaky(self, image, **kw):
        if kw.get("source") == str(broken):
            raise RuntimeError("boom in the encoder")
        return set_image(self, image, **kw)

    out = tmp_path / "out"
    argv = ["segment", str(folder), "--box", *BOX, "--out", str(out), "--backbone", "test-litemedsam"]
    with monkeypatch.context() as m:
        m.setattr(roiprompt.predictor.SamPredictor, "set_image", flaky)
        assert main(argv) == 3
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert len(err) == 1 and "internal error" in err[0] and "boom in the encoder" in err[0], captured.err
    assert "Traceback" not in captured.out + captured.err
    logs = list((tmp_path / "logs").iterdir())
    assert len(logs) == 1 and str(logs[0]) in err[0]
    log = logs[0].read_text()
    assert "Traceback (most recent call last)" in log and "RuntimeError: boom in the encoder" in log
    assert broken.name in captured.out and "see the log" in captured.out
    assert [r["image"] for r in read_csv(out / "predictions.csv")] == [p.name for p in sorted(folder.iterdir())
                                                                      if p != broken]
    assert main(argv) == 0  # the rerun does the one that failed
    assert len(read_csv(out / "predictions.csv")) == 3


def test_a_full_disk_mid_run_stops_with_status_2_and_resumes(tmp_path, monkeypatch, capsys):
    import errno

    import roiprompt.data

    folder = copy_images(busbra_images(3), tmp_path / "in")
    out = tmp_path / "out"
    argv = ["segment", str(folder), "--box", *BOX, "--out", str(out), "--backbone", "test-litemedsam"]
    write_mask_png = roiprompt.data.write_mask_png
    written = []

    def fills_up(path, mask):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path)
        return write_mask_png(path, mask)

    with monkeypatch.context() as m:
        m.setattr(roiprompt.data, "write_mask_png", fills_up)
        assert main(argv) == 2
    err = capsys.readouterr().err
    second = sorted(folder.iterdir())[1].stem
    assert f"{second}_roi.png" in err and "No space left on device" in err and "rerun" in err
    assert len(read_csv(out / "predictions.csv")) == 1 and len(manifest_entries(out)) == 1
    assert main(argv) == 0
    assert "1 of them done by an earlier run" in capsys.readouterr().out
    assert len(read_csv(out / "predictions.csv")) == 3


def test_an_internal_error_outside_images_is_one_line_and_a_log(tmp_path, monkeypatch, capsys):
    import roiprompt.batch.runs

    def bug(*args, **kwargs):
        raise KeyError("unexpected")

    monkeypatch.setattr(roiprompt.batch.runs.BatchRun, "open", bug)
    folder = copy_images(busbra_images(1), tmp_path / "in")
    assert main(["segment", str(folder), "--box", *BOX, "--out", str(tmp_path / "o")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: KeyError" in err[0]
    log = next((tmp_path / "logs").iterdir())
    assert str(log) in err[0] and "Traceback" in log.read_text()


# -- warnings -----------------------------------------------------------------------------------------------------
def test_points_only_with_litemedsam_and_empty_masks_are_marked(tmp_path, monkeypatch, capsys):
    import roiprompt.predictor

    folder = copy_images(busbra_images(1), tmp_path / "in")
    out = tmp_path / "points"
    assert main(["segment", str(folder), "--point", "150", "150", "--out", str(out)]) == 0  # LiteMedSAM: boxes
    (row,) = read_csv(out / "predictions.csv")
    assert "points_only" in row["warning"].split(";")  # a lone point gives LiteMedSAM a near-empty mask: "empty" too
    assert "points without a box" in capsys.readouterr().out

    assert main(["segment", str(folder), "--point", "150", "150", "--box", *BOX, "--out", str(tmp_path / "both"),
                 "--backbone", "test-litemedsam"]) == 0
    assert [r["warning"] for r in read_csv(tmp_path / "both" / "predictions.csv")] == [""]

    best = roiprompt.predictor.SamOutput.best
    monkeypatch.setattr(roiprompt.predictor.SamOutput, "best",
                        lambda self: (np.zeros_like(best(self)[0]), *best(self)[1:]))
    assert main(["segment", str(folder), "--box", *BOX, "--out", str(tmp_path / "empty"),
                 "--backbone", "test-litemedsam"]) == 0
    rows = read_csv(tmp_path / "empty" / "predictions.csv")
    assert [(r["warning"], r["area_px"]) for r in rows] == [("empty", "0")]
    assert "mask is empty" in capsys.readouterr().out
