"""NIfTI slices in the orientation viewers show them, and masks written back into the input's voxel grid.

Convention (the one ITK-SNAP, 3D Slicer and DICOM viewers use): the volume is reoriented to RAS+ with the
affine (nibabel's ``io_orientation``, as ``as_closest_canonical`` does, but per slice, without loading the
volume), ``axis`` names an anatomical axis of that canonical volume (0 sagittal, 1 coronal, 2 axial) and
``slice`` an index along it, and the slice is shown in the radiological convention:

- axial: rows run anterior -> posterior, columns patient right -> left;
- coronal: rows superior -> inferior, columns right -> left;
- sagittal: rows superior -> inferior, columns anterior -> posterior.

So a standard axial DICOM and the NIfTI converted from it read as the same pixels. In all three cases the
2-D slice of the canonical volume, indexed (lower RAS axis, higher RAS axis), is displayed as ``s.T[::-1, ::-1]``.
A file whose affine has no orientation (a zero column) is read in array order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InputError, shown

__all__ = ["NiftiGeometry", "nifti_geometry", "read_nifti_slice", "write_label_nifti", "write_mask_nifti"]


@dataclass(frozen=True)
class NiftiGeometry:
    """Where each array axis of a NIfTI file goes in the canonical (RAS+) volume.

    Attributes:
        shape: spatial shape of the file's array (3 axes; a 2-D image is (X, Y, 1)).
        ras_axis: for each array axis, the canonical axis it maps to (0 = R, 1 = A, 2 = S).
        flipped: for each array axis, whether it runs against the canonical direction.
    """

    shape: tuple[int, int, int]
    ras_axis: tuple[int, int, int]
    flipped: tuple[bool, bool, bool]

    def slices(self, axis: int) -> int:
        """Number of slices along canonical ``axis``."""
        return self.shape[self.ras_axis.index(axis)]

    def default_axis(self) -> int | None:
        """The canonical axis of a 2-D image stored as a volume (the one axis of length 1), else None."""
        flat = [i for i, n in enumerate(self.shape) if n == 1]
        return self.ras_axis[flat[0]] if len(flat) == 1 else None


def _load(path: Path):
    import nibabel as nib

    return nib.load(str(path))


def nifti_geometry(path: str | os.PathLike, img: Any = None) -> NiftiGeometry:
    """Geometry of a NIfTI file from its header (no voxel is read).

    Raises:
        InputError: more than 3 non-singleton dimensions, or an unreadable header.
    """
    from nibabel.orientations import io_orientation

    path = Path(path)
    img = _load(path) if img is None else img
    dims = [int(s) for s in img.shape]
    while len(dims) > 3 and dims[-1] == 1:  # (X, Y, Z, 1): a 3-D volume stored as 4-D
        dims.pop()
    if len(dims) > 3 or len(dims) < 2:
        raise InputError(f"{shown(path)}: NIfTI has shape {tuple(img.shape)}; roiprompt reads 2-D images and 3-D "
                         "volumes (one 2-D slice at a time)")
    shape = (*dims, 1)[:3]
    ornt = io_orientation(np.asarray(img.affine, dtype=np.float64))
    if np.isnan(ornt).any() or sorted(ornt[:, 0].astype(int).tolist()) != [0, 1, 2]:
        return NiftiGeometry(tuple(shape), (0, 1, 2), (False, False, False))  # no usable orientation: array order
    return NiftiGeometry(tuple(shape), tuple(int(a) for a in ornt[:, 0]), tuple(bool(f < 0) for f in ornt[:, 1]))


def _plane(geometry: NiftiGeometry, axis: int, index: int) -> tuple[int, int, tuple[int, int]]:
    """(array axis cut, array index of canonical slice ``index``, the two remaining array axes)."""
    cut = geometry.ras_axis.index(axis)
    n = geometry.shape[cut]
    if not -n <= index < n:
        raise IndexError(index)
    index %= n
    rest = tuple(i for i in range(3) if i != cut)
    return cut, (n - 1 - index if geometry.flipped[cut] else index), rest


def _to_display(data: np.ndarray, geometry: NiftiGeometry, rest: tuple[int, int]) -> np.ndarray:
    """A slice in array order (axes ``rest``) -> the displayed HxW image (see the module docstring)."""
    for k, i in enumerate(rest):
        if geometry.flipped[i]:
            data = np.flip(data, axis=k)
    if geometry.ras_axis[rest[0]] > geometry.ras_axis[rest[1]]:
        data = data.T
    return data.T[::-1, ::-1]


def _from_display(image: np.ndarray, geometry: NiftiGeometry, rest: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`_to_display`: a displayed HxW image -> the slice in array order."""
    data = image[::-1, ::-1].T
    if geometry.ras_axis[rest[0]] > geometry.ras_axis[rest[1]]:
        data = data.T
    for k, i in enumerate(rest):
        if geometry.flipped[i]:
            data = np.flip(data, axis=k)
    return data


def resolve_slice(path: Path, geometry: NiftiGeometry, slice: int | None, axis: int | None) -> tuple[int, int]:
    """(axis, slice) to read: a 2-D image needs neither; a volume needs ``slice`` (never a silent middle slice)."""
    flat_axis = geometry.default_axis()
    if axis is None:
        axis = flat_axis if flat_axis is not None else 2
    if axis not in (0, 1, 2):
        raise InputError(f"{shown(path)}: axis must be 0 (sagittal), 1 (coronal) or 2 (axial), got {axis!r}")
    n = geometry.slices(axis)
    if slice is None:
        if n == 1:
            return axis, 0
        raise InputError(f"{shown(path)}: is a 3-D volume with {n} slices along axis {axis}; choose one: "
                         f"slice=N (CLI: --slice N, or --slice all for every slice), 0 <= N < {n}")
    if not -n <= int(slice) < n:
        raise InputError(f"{shown(path)}: slice {slice} is out of range for axis {axis} of a volume of shape "
                         f"{geometry.shape} ({n} slices)")
    return axis, int(slice) % n


def read_nifti_slice(path: str | os.PathLike, slice: int | None = None, axis: int | None = None,
                     max_pixels: int | None = None) -> np.ndarray:
    """One 2-D slice of a NIfTI file, as stored (native dtype, scaling applied), in display orientation.

    Only that slice is read (nibabel's array proxy), so memory does not grow with the volume.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        slice: index along canonical ``axis``; required for a 3-D volume, not for a 2-D image.
        axis: 0 sagittal, 1 coronal, 2 axial (default: axial, or the flat axis of a 2-D image).
        max_pixels: refuse a slice with more pixels (checked on the header, before reading).

    Returns:
        HxW array (the dtype the file stores, float when it has a scale factor).
    """
    path = Path(path)
    img = _load(path)
    geometry = nifti_geometry(path, img)
    axis, index = resolve_slice(path, geometry, slice, axis)
    cut, array_index, rest = _plane(geometry, axis, index)
    pixels = geometry.shape[rest[0]] * geometry.shape[rest[1]]
    if max_pixels is not None and pixels > max_pixels:
        raise InputError(f"{shown(path)}: slice of {geometry.shape[rest[0]]}x{geometry.shape[rest[1]]} = "
                         f"{pixels / 1e6:.0f} Mpx is over the limit of {max_pixels / 1e6:.0f} Mpx "
                         "(ROIPROMPT_MAX_PIXELS raises it)")
    slicer: list[Any] = [builtin_slice(None)] * 3
    slicer[cut] = array_index
    if len(img.shape) == 2:  # a 2-D image: the whole array is the slice
        data = np.asarray(img.dataobj).reshape(geometry.shape)[tuple(slicer)]
    else:
        data = np.asarray(img.dataobj[tuple(slicer) + (0,) * (len(img.shape) - 3)])
    data = data.reshape(geometry.shape[rest[0]], geometry.shape[rest[1]])
    if data.dtype.names is not None:
        raise InputError(f"{shown(path)}: NIfTI with structured (RGB) voxels is not supported; store grey values")
    return np.ascontiguousarray(_to_display(data, geometry, rest))


builtin_slice = slice  # the readers' keyword is called ``slice``; keep the builtin reachable


def write_mask_nifti(path: str | os.PathLike, like: str | os.PathLike, masks: Mapping[int, np.ndarray],
                     axis: int | None = None) -> Path:
    """Write masks of some slices of ``like`` as a uint8 NIfTI in ``like``'s voxel grid, affine and header.

    Args:
        path: output ``.nii`` / ``.nii.gz``, written atomically.
        like: the NIfTI the masks were predicted on.
        masks: ``{slice index: HxW mask in display orientation}`` (as :func:`read_nifti_slice` returned the image);
            slices not given are 0.
        axis: the canonical axis the slices were read along (as given to :func:`read_nifti_slice`).

    Returns:
        The path. Reading it back with :func:`read_nifti_slice` gives the masks.
    """
    import nibabel as nib

    from ..files import atomic_path

    like = Path(like)
    img = _load(like)
    geometry = nifti_geometry(like, img)
    volume = np.zeros(geometry.shape, np.uint8)
    for index, mask in masks.items():
        axis_, index = resolve_slice(like, geometry, index, axis)
        cut, array_index, rest = _plane(geometry, axis_, index)
        data = _from_display(np.asarray(mask).astype(np.uint8), geometry, rest)
        expected = (geometry.shape[rest[0]], geometry.shape[rest[1]])
        if data.shape != expected:
            raise InputError(f"{shown(path)}: mask of slice {index} is {mask.shape[0]}x{mask.shape[1]}, but the "
                             f"slices of {like.name} are {expected[1]}x{expected[0]}")
        slicer: list[Any] = [builtin_slice(None)] * 3
        slicer[cut] = array_index
        volume[tuple(slicer)] = data
    header = img.header.copy()
    header.set_data_dtype(np.uint8)
    if len(img.shape) == 2:
        volume = volume[:, :, 0]
    out = nib.Nifti1Image(volume, img.affine, header)
    out.header.set_slope_inter(1, 0)
    with atomic_path(path) as tmp:
        nib.save(out, str(tmp))
    return Path(path)


def write_label_nifti(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write a 2-D label map (HxW uint8, displayed orientation) as a one-slice NIfTI with an identity (RAS)
    affine, so that :func:`read_nifti_slice` and viewers show it as the image it labels.

    Returns:
        The path (written atomically).
    """
    import nibabel as nib

    from ..files import atomic_path

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"{shown(path)}: a label map is HxW, got shape {labels.shape}")
    geometry = NiftiGeometry((labels.shape[1], labels.shape[0], 1), (0, 1, 2), (False, False, False))
    data = _from_display(labels.astype(np.uint8), geometry, (0, 1))[:, :, None]
    out = nib.Nifti1Image(np.ascontiguousarray(data), np.eye(4))
    out.header.set_slope_inter(1, 0)
    with atomic_path(path) as tmp:
        nib.save(out, str(tmp))
    return Path(path)
