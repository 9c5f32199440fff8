"""Writers of small test files in every format roiprompt reads (PNG, JPEG, BMP, TIFF, GIF, DICOM, NIfTI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def grey(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def disc(h: int = 24, w: int = 32, cy: float = 12, cx: float = 16, r: float = 6) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def save_pil(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def save_dicom(path: Path, arr: np.ndarray, photometric: str = "MONOCHROME2", **tags) -> Path:
    """Single-frame uncompressed DICOM from a 2-D uint8/uint16/int16 array; extra tags as keywords."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits = arr.dtype.itemsize * 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if np.issubdtype(arr.dtype, np.signedinteger) else 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def save_nifti(path: Path, arr: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """A NIfTI whose axial slices read back (roiprompt's display orientation, identity affine) as ``arr``.

    ``arr`` is HxW (one slice) or HxWxZ (slice k = ``arr[:, :, k]``); it is stored as the viewer convention
    requires: voxel [x, y] = display [Y-1-y, X-1-x] (see roiprompt.data.nifti). ``affine`` given: stored as is.
    """
    import nibabel as nib

    arr = np.asarray(arr)
    if affine is None:
        data = np.flip(np.swapaxes(arr, 0, 1), axis=(0, 1)) if arr.ndim >= 2 else arr
        affine = np.eye(4)
    else:
        data = arr
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(path))
    return path
