"""Datasets as lazy sequences of :class:`~roiprompt.types.Sample`, read from their official folder layouts.

``load_dataset(name)`` lists the files and reads the label tables (cheap); an image and its masks are read only
when a sample is accessed, so ``len``, ``ids``, ``labels`` and the official splits cost no image reads. The
readers live one per module (``kvasir_seg.py``, ``busbra.py``, ``jsrt.py``, ``folder.py``) and register here.

The data root defaults to ``$ROIPROMPT_DATA``, else ``shared/data`` beside the checkout (``../shared/data``
seen from the repository), else ``./shared/data`` or ``../shared/data`` from the working directory.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from ..errors import DataError, InputError
from ..types import Sample
from .io import read_image, read_mask

__all__ = ["Dataset", "Record", "default_root", "find_datasets", "list_datasets", "load_dataset",
           "register_dataset"]


@dataclass(frozen=True)
class Record:
    """What a reader knows about one sample without reading its pixels.

    Attributes:
        id: unique id within the dataset (the file stem).
        image: image file.
        masks: structure name -> mask file, only for the structures this sample has a mask of.
        label: class label or None.
        meta: dataset-specific fields copied into ``Sample.meta``.
        mask_threshold: how the dataset's mask files are binarised when they are not binary (lossy JPEG masks:
            128), a decision of the dataset reader; None = strict (see :func:`~roiprompt.data.read_mask`).
    """

    id: str
    image: Path
    masks: Mapping[str, Path] = field(default_factory=dict)
    label: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    mask_threshold: float | None = None


def load_record(record: Record) -> Sample:
    """Read a record's image and masks (empty masks allowed) into a Sample; ``meta`` gains ``path``."""
    image = read_image(record.image)
    masks = {name: read_mask(path, image.shape[:2], allow_empty=True, threshold=record.mask_threshold)
             for name, path in record.masks.items()}
    meta = {"path": str(record.image), "mask_paths": {k: str(v) for k, v in record.masks.items()}, **record.meta}
    return Sample(record.id, image, masks, record.label, meta)


class Dataset(Sequence[Sample]):
    """A lazy, read-only sequence of samples: ``dataset[i]`` reads image and masks from disk on each access.

    Cheap attributes (no image read): ``name``, ``ids``, ``labels``, ``structures``, ``splits``, ``records``.
    Indexing with a slice, :meth:`subset`, :meth:`split` and :meth:`fold` return Datasets over the same files.

    Example:
        >>> data = load_dataset("busbra")
        >>> len(data), data.structures, data.labels[:2]
        (1875, ('lesion',), ['malignant', 'malignant'])
        >>> train = data.split("train"); sample = train[0]   # Sample(id, image, masks, label, meta)
    """

    def __init__(self, name: str, records: Iterable[Record], structures: Sequence[str], root: Path | None = None,
                 splits: Mapping[str, Sequence[str]] | None = None,
                 loader: Callable[[Record], Sample] = load_record) -> None:
        self._name = name
        self._records = tuple(records)
        self._structures = tuple(structures)
        self._root = root
        self._loader = loader
        self._index = {r.id: i for i, r in enumerate(self._records)}
        if len(self._index) != len(self._records):
            seen: set[str] = set()
            dupes = sorted({r.id for r in self._records if r.id in seen or seen.add(r.id)})
            raise DataError(f"dataset {name!r}: duplicate sample ids {dupes[:10]}")
        self._splits = {k: tuple(i for i in ids if i in self._index) for k, ids in (splits or {}).items()}

    # -- cheap attributes -----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def root(self) -> Path | None:
        """The dataset's folder on disk."""
        return self._root

    @property
    def structures(self) -> tuple[str, ...]:
        """Names of the structures that have masks, e.g. ``("polyp",)``."""
        return self._structures

    @property
    def records(self) -> tuple[Record, ...]:
        return self._records

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self._records]

    @property
    def labels(self) -> list[str | None]:
        """One label per sample (None where the dataset has none), read from the label tables, not images."""
        return [r.label for r in self._records]

    @property
    def classes(self) -> list[str]:
        """Sorted distinct labels (None excluded)."""
        return sorted({r.label for r in self._records if r.label is not None})

    @property
    def splits(self) -> dict[str, list[str]]:
        """Official split name -> sample ids (empty dict when the dataset has none)."""
        return {k: list(v) for k, v in self._splits.items()}

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return (f"Dataset({self._name!r}, {len(self)} samples, structures={self._structures}, "
                f"splits={ {k: len(v) for k, v in self._splits.items()} }, root={str(self._root)!r})")

    # -- access ---------------------------------------------------------------------------------------------
    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> Dataset: ...

    def __getitem__(self, index: int | slice) -> Sample | Dataset:
        if isinstance(index, slice):
            return self.subset(range(len(self))[index])
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset indices must be integers or slices, not {type(index).__name__}; "
                            "use dataset.get(id) for a sample id")
        n = len(self._records)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for dataset {self._name!r} of {n} samples")
        return self._loader(self._records[int(index)])

    def __contains__(self, item: object) -> bool:
        """``"bus_0001-l" in data`` (by id, or by a Sample's id): never reads images."""
        key = item.id if isinstance(item, Sample) else item
        return isinstance(key, str) and key in self._index

    def __iter__(self) -> Iterator[Sample]:
        for record in self._records:
            yield self._loader(record)

    def index(self, id: str, *args: Any) -> int:  # noqa: A002 (Sequence.index signature)
        """Position of sample ``id``; InputError with close matches when unknown."""
        if id not in self._index:
            close = difflib.get_close_matches(str(id), self._index, n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise InputError(f"dataset {self._name!r} has no sample {id!r}{hint}")
        return self._index[id]

    def get(self, id: str) -> Sample:  # noqa: A002
        """The sample with id ``id`` (reads it)."""
        return self[self.index(id)]

    def mask(self, index: int, structure: str | None = None) -> np.ndarray | None:
        """Read only the mask of ``structure`` for sample ``index`` (None when that sample has no mask file).

        Cheaper than ``dataset[index].masks``: the image is not read and the size is not checked against it.
        """
        record = self._records[index]
        structure = self.resolve_structure(structure)
        path = record.masks.get(structure)
        return None if path is None else read_mask(path, allow_empty=True, threshold=record.mask_threshold)

    def resolve_structure(self, structure: str | None) -> str:
        """``structure`` checked against :attr:`structures` (None = the only one); InputError listing them."""
        if structure is None:
            if len(self._structures) != 1:
                raise InputError(f"dataset {self._name!r} has structures {list(self._structures)}; name one")
            return self._structures[0]
        if structure not in self._structures:
            raise InputError(f"dataset {self._name!r} has no structure {structure!r}; it has "
                             f"{list(self._structures)}")
        return structure

    # -- subsets --------------------------------------------------------------------------------------------
    def subset(self, indices: Iterable[int]) -> Dataset:
        """A Dataset of the samples at ``indices`` (in that order); splits keep only the ids present."""
        n = len(self._records)
        picked = []
        for i in indices:
            i = int(i)
            if not -n <= i < n:
                raise IndexError(f"index {i} out of range for dataset {self._name!r} of {n} samples")
            picked.append(self._records[i])
        return Dataset(self._name, picked, self._structures, self._root, self._splits, self._loader)

    def split(self, name: str) -> Dataset:
        """The official split ``name`` (e.g. "train", "val", "test") as a Dataset.

        Raises:
            InputError: unknown split name (the message lists the dataset's splits).
        """
        if name not in self._splits:
            if not self._splits:
                raise InputError(f"dataset {self._name!r} has no official splits; use subset(indices) or "
                                 "roiprompt.data.sample_per_class")
            raise InputError(f"dataset {self._name!r} has no split {name!r}; it has {sorted(self._splits)}")
        return self.subset(self._index[i] for i in self._splits[name])

    def fold(self, k: int) -> tuple[Dataset, Dataset]:
        """Official cross-validation fold ``k``: (train+val, test) where test = the samples with ``kfold == k``.

        Raises:
            InputError: the dataset has no official folds, or ``k`` is not one of them.
        """
        folds = sorted({r.meta["kfold"] for r in self._records if r.meta.get("kfold") is not None})
        if not folds:
            raise InputError(f"dataset {self._name!r} has no official cross-validation folds; use split(...)")
        if k not in folds:
            raise InputError(f"dataset {self._name!r} has folds {folds}, not {k!r}")
        test = [i for i, r in enumerate(self._records) if r.meta.get("kfold") == k]
        rest = [i for i, r in enumerate(self._records) if r.meta.get("kfold") != k]
        return self.subset(rest), self.subset(test)


# -- registry and roots ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    reader: Callable[..., Dataset]
    marker: str  # path under the dataset folder that proves the layout, e.g. "Kvasir-SEG/images"
    source: str  # where to get it


_SPECS: dict[str, _Spec] = {}


def register_dataset(name: str, marker: str, source: str) -> Callable[[Callable[..., Dataset]],
                                                                      Callable[..., Dataset]]:
    """Register ``reader(folder, **kw) -> Dataset`` under ``name``; ``folder`` is the dataset's own folder."""
    def add(reader: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _SPECS:  # two readers under one name is always a bug
            raise ValueError(f"dataset {name!r} is already registered by {_SPECS[name].reader.__module__}")
        _SPECS[name] = _Spec(reader, marker, source)
        return reader
    return add


def list_datasets() -> list[str]:
    """Names :func:`load_dataset` accepts."""
    return sorted(_SPECS)


def default_root() -> Path:
    """``$ROIPROMPT_DATA``, else the first existing of ``<checkout>/../shared/data``, ``./shared/data``,
    ``../shared/data``; when none exists, the first of them (so error messages name it)."""
    env = os.environ.get("ROIPROMPT_DATA")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[2]  # .../<checkout>/roiprompt/data/datasets.py
    candidates = [checkout.parent / "shared" / "data", Path.cwd() / "shared" / "data",
                  Path.cwd().parent / "shared" / "data"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def _spec(name: str) -> _Spec:
    if name not in _SPECS:
        close = difflib.get_close_matches(str(name), _SPECS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InputError(f"unknown dataset {name!r}; {hint}available: {list_datasets()}")
    return _SPECS[name]


def _locate(name: str, root: Path) -> Path:
    """The dataset's own folder: ``root/name`` (the usual case) or ``root`` itself when it holds the layout."""
    spec = _spec(name)
    for candidate in (root / name, root):
        if (candidate / spec.marker).exists():
            return candidate
    if (root / name).is_dir():
        seen = f"{root / name} exists but has no {spec.marker}"
    else:
        seen = f"{root / name} does not exist"
    raise DataError(f"dataset {name!r} not found under {root}: {seen}. Get it from {spec.source}, unpack it so that "
                    f"{root / name / spec.marker} exists, and set ROIPROMPT_DATA to the folder holding {name}/ "
                    "(or pass root=...)")


def load_dataset(name: str, root: str | os.PathLike | None = None, **kwargs: Any) -> Dataset:
    """Open dataset ``name`` lazily (file listings and label tables only; pixels are read on access).

    Args:
        name: one of :func:`list_datasets`: "kvasir_seg", "busbra", "jsrt", or "folder" for your own data.
        root: folder holding ``<name>/`` (default :func:`default_root`); for "folder", the folder with
            ``images/`` (required).
        **kwargs: reader options, e.g. ``label="birads"`` for busbra.

    Returns:
        A lazy :class:`Dataset`.

    Raises:
        InputError: unknown name (the message lists the choices) or bad reader option.
        DataError: the dataset is missing (the message names the path tried and where to get it) or breaks its
            official layout.

    Example:
        >>> data = load_dataset("kvasir_seg"); test = data.split("test")   # 1000 and 100 samples
    """
    spec = _spec(name)
    try:
        inspect.signature(spec.reader).bind(None, **kwargs)
    except TypeError:
        accepted = list(inspect.signature(spec.reader).parameters)[1:]
        raise InputError(f"dataset {name!r} does not take option(s) {sorted(kwargs)}; it accepts "
                         f"{accepted or 'none'}") from None
    if name == "folder":
        if root is None:
            raise InputError("dataset 'folder' needs root=PATH, the folder holding images/ (and masks/, labels.csv)")
        return spec.reader(Path(root).expanduser(), **kwargs)
    base = Path(root).expanduser() if root is not None else default_root()
    return spec.reader(_locate(name, base), **kwargs)


def find_datasets(root: str | os.PathLike | None = None) -> dict[str, int]:
    """Datasets present under ``root`` (default :func:`default_root`) with their sample counts.

    ``"folder"`` is reported when ``root`` itself has an ``images/`` folder. A dataset that is present but
    breaks its layout raises DataError rather than being left out silently.
    """
    base = Path(root).expanduser() if root is not None else default_root()
    found: dict[str, int] = {}
    for name, spec in sorted(_SPECS.items()):
        if name == "folder":
            if (base / "images").is_dir():
                found[name] = len(load_dataset(name, root=base))
        elif (base / name / spec.marker).exists():
            found[name] = len(load_dataset(name, root=base))
    return found


from . import busbra, folder, jsrt, kvasir_seg  # noqa: E402,F401  (each module registers its reader)
