"""``--ray``: the same batch run on a local Ray cluster (``ray.init(num_cpus=2)``, 2 workers) writes the same
files as a local run with the same threads per process, byte for byte, and reports a corrupt image as a local run
does. Real BUS-BRA images and the
real LiteMedSAM for ``oneshot``; the tiny ``test-litemedsam`` for ``classify predict``."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from roiprompt.cli import main
from tests.cli.test_batch_runs import busbra_images, copy_images
from tests.conftest import data_root

ray = pytest.importorskip("ray")  # in the lock: a missing Ray fails the import below in CI, never skips quietly


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs, as a user's ``ray.init`` would make; the CLI's ``--ray auto`` uses it."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_ray_is_installed():
    import ray.data  # noqa: F401 - the lock must provide Ray Data, not only Ray core

    assert ray.__version__.startswith("2.")


def test_oneshot_on_ray_matches_local_run(cluster, tmp_path, capsys):
    """8 real images and a corrupt one: identical masks, overlays, CSV and manifest; the bad file is reported (the
    1,000-image runs are benchmarks/batch.py's)."""
    root = data_root("busbra") / "BUSBRA"
    images = copy_images(busbra_images(8, offset=1), tmp_path / "images")
    (images / "corrupt.png").write_bytes((root / "Images" / "bus_0001-l.png").read_bytes()[:300])
    common = ["oneshot", "--reference", str(root / "Images" / "bus_0001-l.png"),
              "--reference-mask", str(root / "Masks" / "mask_0001-l.png"), "--images", str(images),
              "--method", "persam", "--threads", "1"]  # the same threads per process here and on each worker
    assert main([*common, "--out", str(tmp_path / "local")]) == 1
    local_log = capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "ray"), "--ray", "auto", "--workers", "2"]) == 1
    ray_log = capsys.readouterr().out
    for log in (local_log, ray_log):
        assert "8 segmented, 1 skipped" in log
        assert "corrupt.png: cannot read image" in log
    local, on_ray = files(tmp_path / "local"), files(tmp_path / "ray")
    assert len([k for k in local if k.startswith("masks/")]) == 8
    assert local.keys() == on_ray.keys()
    assert [k for k in local if local[k] != on_ray[k]] == []
    # the scratch copy of the fitted reference the workers loaded is gone (resume is the local code: the driver
    # opens the run and sends only what is left; tests/cli/test_batch_runs.py covers it)
    assert not [p for p in (tmp_path / "ray").iterdir() if p.name.startswith(".")]


def test_classify_predict_on_ray_matches_local_run(cluster, tmp_path, capsys):
    """A saved classifier predicts the same probabilities on Ray workers as here (tiny backbone, real images)."""
    root = data_root("busbra")
    model = tmp_path / "model"
    assert main(["classify", "fit", "--dataset", "busbra", "--root", str(root.parent), "--split", "train",
                 "--shots", "3", "--backbone", "test-litemedsam", "--config", "epochs=2", "--config", "min_steps=2",
                 "--config", "views=1", "--save", str(model)]) == 0
    images = copy_images(busbra_images(6, offset=40), tmp_path / "images")
    masks = tmp_path / "masks"
    masks.mkdir()
    for image in images.iterdir():
        shutil.copyfile(root / "BUSBRA" / "Masks" / image.name.replace("bus_", "mask_"), masks / image.name)
    common = ["classify", "predict", "--model", str(model), "--images", str(images), "--masks", str(masks),
              "--threads", "1"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--ray", "auto", "--workers", "2"]) == 0
    capsys.readouterr()
    assert files(tmp_path / "local") == files(tmp_path / "ray")
    assert len((tmp_path / "ray" / "predictions.csv").read_text().splitlines()) == 7
