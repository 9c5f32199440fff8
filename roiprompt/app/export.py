"""Export what the app shows into its output folder, in the CLI's run layout, so that ``roiprompt report OUT`` and
every tool reading a ``oneshot`` folder read it too:

* ``masks/<stem>_<structure>.png`` (0/255) and, per 2-D image, ``labelmaps/<stem>.nii.gz`` (one uint8 label map:
  structure k of the session's list is value k); a NIfTI input's slices also go back into
  ``masks/<stem>_<structure>.nii.gz`` volumes in its voxel grid; a DICOM input also gets ``masks/<stem>.seg.dcm``
  (DICOM-SEG, one segment per structure, referencing the source image);
* ``overlays/<stem>.png``, ``predictions.csv`` (the ``oneshot`` columns plus ``source``: reference, propagated or
  corrected) and ``manifest.jsonl``;
* ``reference/``: the fitted one-shot method on the accepted images (JSON + safetensors), for
  ``roiprompt oneshot --reference-dir`` and ``roiprompt.load_fitted``;
* ``report.html``: the self-contained report of :mod:`roiprompt.evaluation.report`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..batch.inputs import mask_name
from ..batch.runs import PREDICTION_COLUMNS, BatchRun, prediction_row

if TYPE_CHECKING:
    from .session import Session

#: Where the fitted reference set and the report go inside the output folder.
REFERENCE_DIR, REPORT = "reference", "report.html"
#: The label maps' folder: beside masks/, not in it, so that ``classify predict --masks OUT/masks`` (which reads
#: ``<stem>.<ext>`` as the mask of image ``<stem>``) never takes a multi-structure label map for a binary mask.
LABELMAPS = "labelmaps"
COLUMNS = (*PREDICTION_COLUMNS, "source")


def label_map(masks: dict[str, np.ndarray], structures: Sequence[str]) -> np.ndarray:
    """HxW uint8: value k + 1 where ``structures[k]`` is (a later structure wins where two overlap)."""
    first = next(iter(masks.values()))
    out = np.zeros(first.shape, np.uint8)
    for k, structure in enumerate(structures):
        if structure in masks:
            out[masks[structure]] = k + 1
    return out


EVERYTHING = ("png", "nifti", "dicomseg", "csv", "reference", "report")


def export_session(session: "Session", what: Sequence[str] = EVERYTHING) -> dict:
    """Write the session's masks (drafts over accepted over propagated) and the rest to ``session.out``.

    Returns:
        ``{"out": folder, "images": n, "files": [relative paths written], "labels": {structure: value},
        "warnings": [what could not be written, e.g. a DICOM-SEG of a file without its UIDs]}``.
    """
    from ..data import write_label_nifti, write_mask_png, write_overlay_png
    from ..data.dicom_seg import write_dicom_seg
    from ..errors import InputError
    from ..files import atomic_write_text
    from ..version import __version__

    study, out = session.study, session.out
    shown = {img.id: session.masks(img.id) for img in study.images if not img.error}
    shown = {i: m for i, m in shown.items() if m}
    items = [study.get(i).input for i in shown]
    stems = {study.get(i).input: study.get(i).stem for i in shown}
    settings = {"command": "app", "method": session.method_name, "backbone": session.backbone_name,
                "references": [study.get(i).name for i in session.accepted], "structures": session.structures,
                "roiprompt": __version__}
    run = BatchRun(out, settings, items, stems, overwrite=True, columns=COLUMNS).open()
    if session.has_model():
        run.set_weights(getattr(session.backbone(), "weights_sha256", None))
    files: list[str] = []
    warnings: list[str] = []
    structures = list(session.structures)
    for image_id, masks in shown.items():
        img = study.get(image_id)
        image = study.read(image_id)
        outputs = {}
        for structure, mask in masks.items():
            rel = f"masks/{mask_name(img.stem, structure)}"
            outputs[rel] = run.write_output(rel, lambda p, m=mask: write_mask_png(p, m))
        if "nifti" in what and not img.input.is_nifti:
            rel = f"{LABELMAPS}/{img.stem}.nii.gz"
            outputs[rel] = run.write_output(rel, lambda p: write_label_nifti(p, label_map(masks, structures)))
        if "dicomseg" in what and img.input.path.name.lower().endswith(".dcm"):
            rel = f"masks/{img.stem}.seg.dcm"
            ordered = {s: masks[s] for s in structures if s in masks}
            try:
                outputs[rel] = run.write_output(rel, lambda p: write_dicom_seg(p, img.input.path, ordered))
            except InputError as err:
                warnings.append(f"DICOM-SEG not written: {err}")
        rel = f"overlays/{img.stem}.png"
        outputs[rel] = run.write_output(rel, lambda p: write_overlay_png(p, image, masks))
        results = session.results.get(image_id, {})
        rows = []
        for structure, mask in masks.items():
            source = ("reference" if image_id in session.accepted else
                      "corrected" if structure in session.drafts.get(image_id, {}) else "propagated")
            result = results[structure] if source == "propagated" else None  # a drawn mask has no method scores
            scores = {} if result is None else {"quality": result.quality, "iou_pred": result.iou_pred}
            rows.append({**prediction_row(structure, scores, mask, [] if mask.any() else ["empty"]),
                         "source": source})
        run.add(img.input, outputs, rows)
        files += list(outputs)
    if "nifti" in what:
        run.write_volumes()
    run.rewrite()
    files += ["manifest.jsonl", "predictions.csv"]
    if "reference" in what and session.accepted:
        method = session.fitted_on_accepted()
        method.save(out / REFERENCE_DIR)
        files.append(f"{REFERENCE_DIR}/")
    if "report" in what:
        from ..evaluation.report import build_report

        atomic_write_text(out / REPORT, build_report(out, session.truth, html_path=out / REPORT))
        files.append(REPORT)
    return {"out": str(out), "images": len(shown), "files": files, "warnings": warnings,
            "labels": {s: k + 1 for k, s in enumerate(structures)}}
