"""The classify tab: labels for a few images of the study, a few-shot classifier trained on them with the ROI
masks the page shows (the union of an image's structures), predictions with probabilities for the other images,
MedFocusCLIP's attention panel, and the export.

Training and prediction run as the session's background job (one at a time, with progress), and every model call
on the session's model thread (:meth:`Session.on_model`), like propagation.
"""

from __future__ import annotations

import csv
import io
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from .session import Session

#: The classifiers the tab offers. ``linear_probe_masked`` is the default: at 1-32 images per class no trained head
#: beat it on BUS-BRA (README, "Which few-shot classifier"), and it trains in seconds.
CLASSIFIERS = ("linear_probe_masked", "segprompt", "medfocusclip")
DEFAULT_CLASSIFIER = "linear_probe_masked"
#: Where the export goes inside the output folder: ``predictions.csv`` and the fitted classifier (``model/``).
CLASSIFY_DIR = "classification"
_LABEL_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. ")


def check_label(label: Any) -> str:
    """``label`` if it can name a class (1-40 letters, digits, space, ``_``, ``-`` or ``.``), else InputError."""
    if not isinstance(label, str) or not 0 < len(label.strip()) <= 40 or not set(label) <= _LABEL_CHARS:
        raise InputError(f"class label {label!r}: use 1-40 letters, digits, spaces, '_', '-' or '.' "
                         "(e.g. benign, malignant)")
    return label.strip()


class Classification:
    """Labels, the classifier trained on them and its predictions, for one :class:`Session`.

    Args:
        session: the app's session (study, masks, model thread, background job).
        config: fields of every classifier's config (e.g. ``views=1`` for a quicker fit).
        cache_dir: on-disk cache of encoder tokens shared by the classifiers (None: a temporary folder).
    """

    def __init__(self, session: "Session", config: Mapping[str, Any] | None = None,
                 cache_dir: str | Path | None = None) -> None:
        self.session = session
        self.config = dict(config or {})
        # a temporary cache lives as long as the session (removed when it is garbage-collected or at exit)
        self._tmp = None if cache_dir else tempfile.TemporaryDirectory(prefix="roiprompt-app-tokens-")
        self.cache_dir = str(cache_dir or self._tmp.name)
        self.labels: dict[int, str] = {}
        self.method_name = DEFAULT_CLASSIFIER
        self.fitted = None
        self.trained_on: list[int] = []
        self.predictions: dict[int, dict[str, Any]] = {}  # image id -> {"label", "scores"}

    # -- labels -------------------------------------------------------------------------------------------------
    def set_label(self, image_id: int, label: str | None) -> None:
        """Label an image (None or "" removes its label)."""
        self.session.study.get(image_id)
        with self.session.state_lock:
            if label in (None, ""):
                self.labels.pop(image_id, None)
            else:
                self.labels[image_id] = check_label(label)
                self.predictions.pop(image_id, None)  # a labelled image is not predicted
            self.session.version += 1

    def read_labels_csv(self, data: bytes, name: str = "labels.csv") -> dict[str, Any]:
        """Labels from a CSV with a header naming the image (``image``, ``id``, ``name`` or ``file``) and ``label``;
        an image is matched by file name, output stem or file name without its suffixes.

        Returns:
            ``{"set": n, "unknown": [names not in the study]}``.
        """
        try:
            rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
        except (UnicodeDecodeError, csv.Error) as err:
            raise InputError(f"{name}: not a UTF-8 CSV ({err})") from None
        if not rows:
            raise InputError(f"{name}: no rows under the header")
        key = next((k for k in ("image", "id", "name", "file") if k in rows[0]), None)
        if key is None or "label" not in rows[0]:
            raise InputError(f"{name}: needs a header with an image column (image, id, name or file) and label; "
                             f"got {list(rows[0])}")
        index: dict[str, int] = {}
        for img in self.session.study.images:
            for alias in (img.name, img.stem, img.name.split(".")[0]):
                index.setdefault(alias, img.id)
        labels, unknown = {}, []
        for n, row in enumerate(rows, start=2):
            image, label = (row.get(key) or "").strip(), (row.get("label") or "").strip()
            if not image:
                raise InputError(f"{name} line {n}: no image named")
            if image not in index:
                unknown.append(image)
            elif label:
                labels[index[image]] = check_label(label)
        with self.session.state_lock:
            for image_id, label in labels.items():
                self.labels[image_id] = label
                self.predictions.pop(image_id, None)
            self.session.version += 1
        return {"set": len(labels), "unknown": unknown}

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels.values()))

    def roi(self, image_id: int) -> np.ndarray | None:
        """The image's ROI: the union of the masks the page shows for it (None: no mask, or every mask empty)."""
        masks = self.session.masks(image_id)
        if not masks:
            return None
        roi = np.logical_or.reduce(list(masks.values()))
        return roi if roi.any() else None

    # -- training and prediction (background jobs) -----------------------------------------------------------------
    def train(self, method: str | None = None) -> None:
        """Fit ``method`` (one of :data:`CLASSIFIERS`) on the labelled images that have an ROI, in the background.

        Raises:
            InputError: an unknown method, fewer than two classes among the labelled images with an ROI.
        """
        from ..types import Sample

        name = method or self.method_name
        if name not in CLASSIFIERS:
            raise InputError(f"classifier {name!r}: choose one of {', '.join(CLASSIFIERS)}")
        session, study = self.session, self.session.study
        with session.state_lock:
            labelled = dict(self.labels)
        rois = {i: self.roi(i) for i in labelled if not study.get(i).error}
        usable = {i: label for i, label in labelled.items() if rois.get(i) is not None}
        if len(set(usable.values())) < 2:
            without = sorted(study.get(i).name for i in set(labelled) - set(usable))
            raise InputError("label images of at least two classes that have an ROI mask (draw, accept and "
                             "propagate first)" + (f"; without a mask: {', '.join(without[:5])}" if without else ""))
        left_out = len(labelled) - len(usable)

        def progress(stage: str, done: int, total: int) -> None:
            session.job.update(done=done, total=total, message=f"{stage} ({name}, {len(usable)} images)")

        def work() -> None:
            from ..methods import load_method

            samples = [Sample(study.get(i).stem, study.read(i), {"roi": rois[i]}, label)
                       for i, label in usable.items()]

            def fit():
                clf = load_method(name, backbone=session.backbone(), cache_dir=self.cache_dir, **self.config)
                return clf.fit(samples, progress=progress)

            start = time.perf_counter()
            fitted = session.on_model(fit)
            with session.state_lock:
                self.fitted, self.method_name, self.trained_on = fitted, name, list(usable)
                self.predictions = {}
            session.job.update(fit_seconds=time.perf_counter() - start, steps=len(fitted.losses),
                               message=f"trained {name} on {len(usable)} images in {len(fitted.losses)} steps"
                               + (f"; {left_out} labelled image(s) without a mask left out" if left_out else ""))

        session._start("training", len(usable), work)

    def predict(self) -> None:
        """Classify every unlabelled image that has an ROI, in the background, one result at a time."""
        if self.fitted is None:
            raise InputError("train a classifier first")
        session, study, fitted = self.session, self.session.study, self.fitted
        targets = [img.id for img in study.images if not img.error and img.id not in self.labels]

        def work() -> None:
            session.job["message"] = f"{self.method_name} on {len(targets)} images"
            for image_id in targets:
                if session._cancel.is_set():
                    return
                roi = self.roi(image_id)
                if roi is not None and image_id not in self.labels:
                    image, name = study.read(image_id), study.get(image_id).name
                    pred = session.on_model(fitted.predict, image, mask=roi, source=name)
                    with session.state_lock:
                        self.predictions[image_id] = {"label": str(pred.label),
                                                      "scores": {c: float(p) for c, p in pred.scores.items()}}
                        session.version += 1
                session.job["done"] += 1

        session._start("classifying", len(targets), work)

    def attention_png(self, image_id: int) -> bytes:
        """MedFocusCLIP's attention over the image with and without the ROI guidance, as one PNG."""
        from ..data import write_attention_png

        if self.fitted is None or self.method_name != "medfocusclip":
            raise InputError("the attention panel needs a trained medfocusclip")
        roi = self.roi(image_id)
        if roi is None:
            raise InputError(f"{self.session.study.get(image_id).name} has no ROI mask")
        image = self.session.study.read(image_id)
        maps = self.session.on_model(self.fitted.attention, image, mask=roi, resolution="image")
        with tempfile.TemporaryDirectory() as tmp:
            path = write_attention_png(Path(tmp) / "attention.png", image,
                                       {"unguided": maps["unguided"], "guided by the ROI": maps["guided"]}, mask=roi)
            return path.read_bytes()

    # -- what the page lists, and the export ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        with self.session.state_lock:
            return {"methods": list(CLASSIFIERS), "method": self.method_name, "classes": self.classes,
                    "labels": {str(i): label for i, label in self.labels.items()},
                    "trained": self.fitted is not None, "trained_on": list(self.trained_on),
                    "predictions": {str(i): p for i, p in self.predictions.items()}}

    def export(self) -> dict[str, Any]:
        """Write ``classification/predictions.csv`` (every labelled and predicted image: ``image, slice, label,
        p_<class>..., roi, source``) and ``classification/model/`` (the fitted classifier, for ``roiprompt
        classify predict --model``) into the session's output folder."""
        from ..batch.inputs import image_labels
        from ..batch.runs import score_cell
        from ..files import atomic_write_text

        if self.fitted is None:
            raise InputError("train a classifier first")
        out = self.session.out / CLASSIFY_DIR
        classes = list(self.fitted.classes)
        columns = ["image", "slice", "label", *(f"p_{c}" for c in classes), "roi", "source"]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        with self.session.state_lock:
            labels, predictions = dict(self.labels), dict(self.predictions)
        images = self.session.study.images
        names = image_labels([img.input for img in images])  # the CLI's image cell: the file name
        for img in images:
            if img.id not in labels and img.id not in predictions:
                continue
            pred = predictions.get(img.id)
            row = {"image": names[img.input], "slice": img.input.slice_cell(),
                   "label": labels.get(img.id) or pred["label"], "roi": "+".join(self.session.masks(img.id)),
                   "source": "labelled" if img.id in labels else "predicted"}
            row.update({f"p_{c}": score_cell(pred["scores"].get(c)) if pred else "" for c in classes})
            writer.writerow(row)
        atomic_write_text(out / "predictions.csv", buffer.getvalue())
        self.fitted.save(out / "model")
        return {"out": str(out), "files": [f"{CLASSIFY_DIR}/predictions.csv", f"{CLASSIFY_DIR}/model/"],
                "rows": buffer.getvalue().count("\n") - 1}
