"""``roiprompt report``: the HTML page of a real ``oneshot`` run over BUS-BRA images (the tiny random
``test-litemedsam``: the masks are poor, which does not matter here), checked against the run's own files."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from roiprompt.cli import main
from roiprompt.data import read_mask
from roiprompt.metrics import dice
from tests.conftest import data_root

N_IMAGES = 4


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path, dict[str, Path]]:
    """(a finished oneshot output folder, its input folder, {stem: BUS-BRA truth mask}), made once per module."""
    busbra = data_root("busbra") / "BUSBRA"
    images = sorted((busbra / "Images").glob("bus_*.png"))
    root = tmp_path_factory.mktemp("report")
    (root / "in").mkdir()
    for image in images[:N_IMAGES]:
        shutil.copyfile(image, root / "in" / image.name)
    reference = images[40]
    shutil.copyfile(reference, root / "ref.png")
    shutil.copyfile(busbra / "Masks" / reference.name.replace("bus_", "mask_"), root / "ref_mask.png")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROIPROMPT_RUNTIME", "eager")
        mp.setenv("ROIPROMPT_LOG_DIR", str(root / "logs"))
        assert main(["oneshot", "--reference", str(root / "ref.png"), "--reference-mask", str(root / "ref_mask.png"),
                     "--images", str(root / "in"), "--out", str(root / "out"), "--backbone", "test-litemedsam",
                     "--method", "persam"]) == 0
    truth = {image.stem: busbra / "Masks" / image.name.replace("bus_", "mask_") for image in images[:N_IMAGES]}
    return root / "out", root / "in", truth


@pytest.fixture
def out(run, tmp_path) -> Path:
    """A copy of the run folder this test may damage."""
    return Path(shutil.copytree(run[0], tmp_path / "out"))


def truth_folder(folder: Path, truth: dict[str, Path], stems) -> Path:
    folder.mkdir(parents=True)
    for stem in stems:
        shutil.copyfile(truth[stem], folder / f"{stem}.png")
    return folder


def predictions(out: Path) -> list[dict]:
    with open(out / "predictions.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def tiles(html: str) -> dict[str, str]:
    """{stem: the HTML of its tile}, in page order."""
    return dict(re.findall(r'<figure class="tile[^"]*" data-stem="([^"]+)"[^>]*>(.*?)</figure>', html, re.S))


def computed_dice(out: Path, stem: str, truth: Path) -> float:
    pred = read_mask(out / "masks" / f"{stem}_roi.png", allow_empty=True)
    return dice(pred, read_mask(truth, image_hw=pred.shape, allow_empty=True))


def test_report_sorts_worst_quality_first_and_gives_the_dice(out, run, tmp_path, capsys):
    stems = sorted(run[2])
    truth = truth_folder(tmp_path / "truth", run[2], stems[1:])  # the first image has no truth mask
    assert main(["report", str(out), "--truth", str(truth)]) == 0
    assert f"wrote {out / 'report.html'}: {N_IMAGES} image(s), 1 mask(s) without a truth mask" in capsys.readouterr().out
    html = (out / "report.html").read_text(encoding="utf-8")

    rows = predictions(out)
    worst_first = [Path(r["image"]).stem for r in sorted(rows, key=lambda r: float(r["quality"]))]
    shown = tiles(html)
    assert list(shown) == ["reference", *worst_first]  # the reference first, then worst quality first
    for r in rows:
        assert f'<span class="q bad">{r["quality"]}</span>' in shown[Path(r["image"]).stem]

    dices = {stem: computed_dice(out, stem, run[2][stem]) for stem in stems[1:]}
    for stem, value in dices.items():
        assert re.findall(r'<td class="n dice">([0-9.]+)</td>', shown[stem]) == [f"{value:.4f}"]
    assert "no truth" in shown[stems[0]]
    assert re.search(r'<ul id="no-truth"><li>' + re.escape(stems[0]) + r" \(roi\)</li></ul>", html)
    table = re.search(r'<tr data-structure="roi">(.*?)</tr>', html).group(1)
    cells = re.findall(r'<td class="n">([^<]*)</td>', table)
    mean_dice = sum(dices.values()) / len(dices)
    areas = [int(r["area_px"]) for r in rows]
    assert cells == [str(N_IMAGES), f"{sum(float(r['quality']) for r in rows) / N_IMAGES:.4f}", cells[2],
                     str(N_IMAGES), f"{sum(areas) / N_IMAGES:.1f}", str(min(areas)), str(max(areas)),
                     str(sum(a == 0 for a in areas)), f"{mean_dice:.4f}", "3"]
    assert html.count("<svg") == 2  # the quality and the Dice histogram of the one structure

    # self-contained: nothing fetched from anywhere, thumbnails embedded and downscaled
    assert not re.search(r"https?://", html)
    assert "<script" not in html and "<link" not in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == N_IMAGES + 1 and all(s.startswith("data:image/jpeg;base64,") for s in sources)
    thumb = Image.open(io.BytesIO(base64.b64decode(sources[1].split(",", 1)[1])))
    assert max(thumb.size) <= 200


def test_truth_in_structure_folders_and_the_html_elsewhere(out, run, tmp_path):
    stems = sorted(run[2])
    truth = truth_folder(tmp_path / "truth" / "roi", run[2], stems).parent
    page = tmp_path / "pages" / "run.html"
    assert main(["report", str(out), "--truth", str(truth), "--html", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    assert not (out / "report.html").exists()
    shown = tiles(html)
    for stem in stems:
        value = computed_dice(out, stem, run[2][stem])
        assert re.findall(r'<td class="n dice">([0-9.]+)</td>', shown[stem]) == [f"{value:.4f}"]
        link = re.search(r'<a href="([^"]+)">', shown[stem]).group(1)
        assert (page.parent / link).resolve() == (out / "overlays" / f"{stem}.png").resolve()


def test_jpeg_truth_needs_the_threshold(out, run, tmp_path):
    stem = sorted(run[2])[0]
    truth = tmp_path / "truth"
    truth.mkdir()
    Image.open(run[2][stem]).convert("L").save(truth / f"{stem}.jpg", quality=75)  # lossy: not strictly 0/255
    assert main(["report", str(out), "--truth", str(truth)]) == 1  # refused by read_mask: a problem
    assert f"truth of {stem} (roi)" in (out / "report.html").read_text(encoding="utf-8")
    assert main(["report", str(out), "--truth", str(truth), "--truth-threshold", "128"]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    value = float(re.findall(r'<td class="n dice">([0-9.]+)</td>', tiles(html)[stem])[0])
    assert value == pytest.approx(computed_dice(out, stem, run[2][stem]), abs=0.01)


def test_missing_and_damaged_outputs_are_listed_as_problems(out, run, tmp_path, capsys):
    first, second = sorted(run[2])[:2]
    truth = truth_folder(tmp_path / "truth", run[2], run[2])
    (out / "masks" / f"{first}_roi.png").unlink()
    (out / "overlays" / f"{second}.png").write_bytes(b"not a png")
    assert main(["report", str(out), "--truth", str(truth)]) == 1
    printed = capsys.readouterr().out
    html = (out / "report.html").read_text(encoding="utf-8")
    problems = re.search(r'<ul class="problems" id="problems">(.*?)</ul>', html).group(1)
    assert f"<li>masks/{first}_roi.png: listed in the manifest but missing</li>" in problems
    assert f"overlays/{second}.png: changed since the run" in problems
    assert f"masks/{first}_roi.png: listed in the manifest but missing" in printed
    shown = tiles(html)
    assert "mask missing" in shown[first] and "no mask" in shown[first]
    assert "overlay missing or unreadable" in shown[second]
    assert len(shown) == N_IMAGES + 1  # every image still has its tile
    assert len(re.findall(r"<li>", problems)) == 3  # the missing mask, the changed overlay and its failed read
    assert len(re.findall(r'<td class="n dice">', html)) == N_IMAGES - 1  # no Dice without the mask


def test_a_folder_that_is_not_a_run_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"roiprompt report: error: {tmp_path / 'empty'}: not a roiprompt run folder (no manifest.jsonl); "
                   "give the --out folder of a segment, oneshot or classify predict run")
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "report.html").exists()


def test_a_classify_predict_folder_shows_classes(tmp_path):
    out = tmp_path / "cls"
    out.mkdir()
    header = {"roiprompt_run": 1, "settings": {"command": "classify predict", "roiprompt": "0.1.0"},
              "weights_sha256": None, "outputs": {}}
    probs = {"a": (0.9, 0.1), "b": (0.45, 0.55), "c": (0.2, 0.8)}
    lines = [header] + [{"input": f"{s}.png", "sha256": "0" * 64, "stem": s, "outputs": {},
                         "rows": [{"label": "benign" if p[0] > p[1] else "malignant", "p_benign": f"{p[0]:.4f}",
                                   "p_malignant": f"{p[1]:.4f}", "roi": f"{s}_roi.png"}]} for s, p in probs.items()]
    (out / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"torn', "ascii")
    assert main(["report", str(out)]) == 1  # the torn last line is a problem
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "manifest.jsonl line 5: damaged" in html
    assert re.search(r'<tr data-class="benign"><td>benign</td><td class="n">1</td>', html)
    assert re.search(r'<tr data-class="malignant"><td>malignant</td><td class="n">2</td>', html)
    assert html.count("<svg") == 3  # confidence and one per class
    assert re.findall(r'<tr data-stem="([^"]+)">', html) == ["b", "c", "a"]  # least confident first
    assert "<figure" not in html
