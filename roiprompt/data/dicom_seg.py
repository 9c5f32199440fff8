"""DICOM-SEG: the masks of a single-frame DICOM image as a DICOM Segmentation object (highdicom) that viewers
(3D Slicer, OHIF, any PACS) open over the source image.

One segment per structure, in the order given, binary, on the source's pixel grid; the object references the
source instance, and copies its patient and study (from highdicom). Missing type-2 patient/study elements
(allowed empty) are left empty; a source without its identifying UIDs cannot be referenced and is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import InputError, shown
from ..files import atomic_path

#: Elements DICOM requires to identify the source image (type 1): a DICOM-SEG cannot reference it without them.
REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns")
#: Type-2 patient and study elements highdicom copies from the source: present but possibly empty.
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber")


def write_dicom_seg(path: str | os.PathLike, source: str | os.PathLike, masks: Mapping[str, np.ndarray],
                    series_description: str = "roiprompt") -> Path:
    """Write ``masks`` ({structure: HxW bool}, HxW = the source's Rows x Columns) as a DICOM-SEG of ``source``.

    Raises:
        InputError: the source is unreadable, multi-frame, lacks an identifying UID, or a mask's shape differs.
        ImportError: highdicom is not installed (``pip install 'roiprompt[app]'``).
    """
    import highdicom as hd
    import pydicom

    from ..version import __version__

    source = Path(source)
    try:
        ds = pydicom.dcmread(source)
    except (OSError, pydicom.errors.InvalidDicomError) as err:
        raise InputError(f"{shown(source)}: not a readable DICOM file ({err})") from None
    if missing := [k for k in REQUIRED if k not in ds]:
        raise InputError(f"{shown(source)}: no {', '.join(missing)}: a DICOM-SEG cannot reference this image")
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise InputError(f"{shown(source)}: DICOM-SEG export handles single-frame images only")
    if not masks:
        raise InputError(f"{shown(source)}: no masks to write")
    hw = (int(ds.Rows), int(ds.Columns))
    for name, mask in masks.items():
        if np.shape(mask) != hw:
            raise InputError(f"{shown(source)}: the {name} mask is {np.shape(mask)}, the image {hw}")
    for key in TYPE2:
        if key not in ds:
            setattr(ds, key, "")
    algorithm = hd.AlgorithmIdentificationSequence(
        name="roiprompt", version=__version__,
        family=hd.sr.CodedConcept("123110", "DCM", "Artificial Intelligence"))
    descriptions = [hd.seg.SegmentDescription(
        segment_number=k + 1, segment_label=name,
        segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
        segmented_property_type=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC, algorithm_identification=algorithm)
        for k, name in enumerate(masks)]
    pixels = np.stack([np.asarray(m, bool) for m in masks.values()], axis=-1)[None].astype(np.uint8)  # (1, H, W, S)
    seg = hd.seg.Segmentation(
        source_images=[ds], pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=900,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="roiprompt", manufacturer_model_name="roiprompt",
        software_versions=__version__, device_serial_number="0", series_description=series_description,
        omit_empty_frames=False)
    path = Path(path)
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return path
