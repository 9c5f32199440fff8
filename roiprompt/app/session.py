"""What the app holds for one study: the annotations being drawn, the accepted references, the propagated results,
and the background work (loading the study, propagating). The HTTP layer (:mod:`.server`) only translates.

The clinician's loop, in calls:

* :meth:`Session.segment` (a box and clicks on one image -> the SAM mask of one structure, the image encoded once),
  :meth:`Session.set_mask` (a brushed or loaded mask);
* :meth:`Session.accept` (the image's masks become a reference: k-shot; accepted images are never overwritten);
* :meth:`Session.propagate` (the one-shot default, fitted on every accepted image, over the images not accepted,
  in a background thread; results appear one by one with their quality flag);
* :meth:`Session.export` (:mod:`.export`).

Every model call runs on one thread (:meth:`Session.on_model`), in the order asked: an interactive box waits for
at most the image being propagated, and the model's thread pools are only ever driven from that one thread.
"""

from __future__ import annotations

import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import InputError, RoiPromptError
from .classify import Classification
from .masks import Result, check_structure
from .study import Study, thumbnail

class Session:
    """The app's state for one study.

    Args:
        study: the images.
        out: the output folder (exports); created on export.
        method: the one-shot method propagation uses (default: the one-shot default).
        backbone: SAM-family backbone (name or built), shared by the interactive predictor and the one-shot method.
        weights: local checkpoint for the backbone (None: its offline default).
        config: the one-shot method's config fields (e.g. ``warp_iterations``).
        truth: a folder of ground-truth masks: the exported report gives Dice against them.
        classifier_config: fields of the classify tab's classifier configs (e.g. ``views=1``; :mod:`.classify`).
    """

    def __init__(self, study: Study, out: Path, method: str | None = None, backbone: Any = "litemedsam",
                 weights: str | None = None, config: Mapping[str, Any] | None = None,
                 truth: Path | None = None, classifier_config: Mapping[str, Any] | None = None) -> None:
        from ..methods.oneshot import DEFAULT_ONESHOT_METHOD
        from ..runtime.allocator import share_main_arena

        share_main_arena()  # the model runs in worker threads: see share_main_arena
        self.study = study
        self.out = Path(out).resolve()
        self.method_name = method or DEFAULT_ONESHOT_METHOD
        self.backbone_name = backbone if isinstance(backbone, str) else backbone.name
        self.weights = weights
        self.config = dict(config or {})
        self.truth = truth
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roiprompt-model")
        self.state_lock = threading.RLock()
        self._backbone = None if isinstance(backbone, str) else backbone
        self._predictor = None
        self._encoded: int | None = None  # the image the predictor holds
        self._embeddings: dict[int, tuple] = {}  # a few recent encodes: reopening an image is instant
        self.structures: list[str] = []
        self.drafts: dict[int, dict[str, np.ndarray]] = {}  # masks being drawn or corrected, per image
        self.prompts: dict[tuple[int, str], dict] = {}  # the box and clicks behind each draft
        self.accepted: dict[int, dict[str, np.ndarray]] = {}  # references, in the order accepted
        self.results: dict[int, dict[str, Result]] = {}
        self.failed: dict[int, str] = {}
        self.fitted = None  # the one-shot method last fitted, and the accepted masks it was fitted on
        self._fitted_on: dict | None = None
        self.version = 0  # bumped on every change the page shows
        self.changed: dict[int, int] = {}  # image id -> the version its masks last changed at
        self.job: dict[str, Any] = {"kind": None, "state": "idle", "done": 0, "total": 0, "message": ""}
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self.classify = Classification(self, classifier_config)  # the classify tab: labels, classifier, predictions

    # -- model --------------------------------------------------------------------------------------------------
    def backbone(self):
        if self._backbone is None:
            from ..models.backbones import load_backbone

            self._backbone = load_backbone(self.backbone_name, weights=self.weights)
        return self._backbone

    def has_model(self) -> bool:
        """Whether the backbone is loaded (exports record its weights' SHA-256 then)."""
        return self._backbone is not None

    def _predictor_on(self, image_id: int):
        """The interactive predictor with ``image_id`` set (encoded once; a few recent encodes kept). Call on the
        model thread (:meth:`on_model`)."""
        from ..predictor import SamPredictor

        if self._predictor is None:
            self._predictor = SamPredictor(self.backbone())
        if self._encoded != image_id:
            if image_id in self._embeddings:
                self._predictor.set_embedding(*self._embeddings[image_id])
            else:
                image = self.study.read(image_id)
                self._predictor.set_image(image, source=self.study.get(image_id).name)
                self._embeddings[image_id] = (self._predictor.embedding, image.shape[:2])
                while len(self._embeddings) > 4:
                    self._embeddings.pop(next(iter(self._embeddings)))
            self._encoded = image_id
        return self._predictor

    def on_model(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on the model thread (after what was asked before); its result or its error."""
        return self._model_thread.submit(fn, *args, **kwargs).result()

    def encode(self, image_id: int) -> float:
        """Encode ``image_id`` for annotation now (the page calls it when an image is opened); returns seconds."""
        start = time.perf_counter()
        self.on_model(self._predictor_on, image_id)
        return time.perf_counter() - start

    def _touch(self, image_id: int) -> None:
        """Record that what the page shows for ``image_id`` changed (its tile and masks are fetched again)."""
        self.version += 1
        self.changed[image_id] = self.version

    # -- annotation ---------------------------------------------------------------------------------------------
    def add_structure(self, name: str) -> list[str]:
        with self.state_lock:
            if check_structure(name) not in self.structures:
                self.structures.append(name)
                self.version += 1
        return self.structures

    def masks(self, image_id: int) -> dict[str, np.ndarray]:
        """What the page shows for an image: its draft masks over its accepted ones over its results."""
        with self.state_lock:
            shown = {s: r.mask for s, r in self.results.get(image_id, {}).items()}
            shown.update(self.accepted.get(image_id, {}))
            shown.update(self.drafts.get(image_id, {}))
            return shown

    def segment(self, image_id: int, structure: str, box: Sequence[float] | None = None,
                points: Sequence[Sequence[float]] = ()) -> dict:
        """The mask of ``structure`` on ``image_id`` from a box (XYXY pixels) and clicks ``[[x, y, 1|0], ...]``
        (1 adds, 0 removes); an image with a mask but no box (a propagated result being corrected) uses the
        mask's bounding box. Returns ``{"area", "iou_pred", "seconds"}``; the mask becomes the image's draft."""
        check_structure(structure)
        self.study.get(image_id)
        try:
            pts = np.asarray(points, dtype=np.float64).reshape(-1, 3) if len(points) else np.zeros((0, 3))
            box = None if box is None else [float(v) for v in box]
        except (TypeError, ValueError):
            raise InputError(f"prompt: box {box!r} must be four numbers x0, y0, x1, y1 and points [[x, y, 1 or 0], "
                             f"...], got points {points!r}") from None
        if box is not None:
            if len(box) != 4 or not np.isfinite(box).all():
                raise InputError(f"box {box!r}: give four numbers x0, y0, x1, y1")
            box = [min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])]
        elif len(pts):
            current = self.masks(image_id).get(structure)
            if current is not None and current.any():
                ys, xs = np.nonzero(current)
                box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        if box is None and not len(pts):
            raise InputError("draw a box (or click) on the image first")
        start = time.perf_counter()

        def decode() -> tuple:
            predictor = self._predictor_on(image_id)
            encoded = time.perf_counter()
            return encoded, predictor.predict(points=pts[:, :2] if len(pts) else None,
                                              point_labels=pts[:, 2].astype(int) if len(pts) else None,
                                              box=None if box is None else np.asarray(box))

        encoded, out = self.on_model(decode)
        mask, iou, _ = out.best()
        with self.state_lock:
            self.add_structure(structure)
            self.drafts.setdefault(image_id, {})[structure] = mask
            self.prompts[(image_id, structure)] = {"box": box, "points": pts.tolist()}
            self._touch(image_id)
        return {"area": int(mask.sum()), "iou_pred": float(iou), "seconds": time.perf_counter() - encoded,
                "encode_seconds": encoded - start}

    def set_mask(self, image_id: int, structure: str, mask: np.ndarray) -> None:
        """A brushed, erased or loaded mask (HxW, nonzero = inside) becomes the draft of ``structure``."""
        check_structure(structure)
        img = self.study.get(image_id)
        hw = self.study.read(image_id).shape[:2]
        if mask.shape != hw:
            raise InputError(f"mask for {img.name}: {mask.shape[1]}x{mask.shape[0]}, but the image is {hw[1]}x{hw[0]}")
        with self.state_lock:
            self.add_structure(structure)
            self.drafts.setdefault(image_id, {})[structure] = mask.astype(bool)
            self._touch(image_id)

    def discard(self, image_id: int) -> None:
        """Forget the drafts of an image (back to its accepted masks or its result)."""
        with self.state_lock:
            self.drafts.pop(image_id, None)
            self.prompts = {k: v for k, v in self.prompts.items() if k[0] != image_id}
            self._touch(image_id)

    def accept(self, image_id: int) -> dict[str, np.ndarray]:
        """The image's masks (drafts over its result) become a reference; it is never overwritten afterwards.

        Raises:
            InputError: the image lacks one of the structures, or a mask is empty.
        """
        masks = self.masks(image_id)
        name = self.study.get(image_id).name
        missing = [s for s in self.structures if s not in masks]
        if not masks or missing:
            raise InputError(f"{name}: draw {', '.join(missing) or 'a structure'} before accepting the image")
        empty = [s for s, m in masks.items() if not m.any()]
        if empty:
            raise InputError(f"{name}: the {', '.join(empty)} mask is empty; draw it before accepting the image")
        with self.state_lock:
            self.accepted[image_id] = {s: masks[s] for s in self.structures}
            self.drafts.pop(image_id, None)
            self._touch(image_id)
        return self.accepted[image_id]

    def unaccept(self, image_id: int) -> None:
        """Take an image out of the references (it is propagated again)."""
        with self.state_lock:
            self.accepted.pop(image_id, None)
            self._touch(image_id)

    # -- background work ------------------------------------------------------------------------------------------
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self, kind: str, total: int, work) -> None:
        if self.busy():
            raise RoiPromptError(f"{self.job['kind']} is running; wait for it or stop it first")
        self._cancel.clear()
        self.job = {"kind": kind, "state": "running", "done": 0, "total": total, "message": "", "started": time.time()}

        def run() -> None:
            try:
                work()
                self.job["state"] = "stopped" if self._cancel.is_set() else "done"
            except Exception as err:  # noqa: BLE001 - shown on the page; the app keeps running
                self.job.update(state="failed", message=str(err) if isinstance(err, RoiPromptError) else
                                f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
            finally:
                self.job["seconds"] = time.time() - self.job["started"]
                self.version += 1

        self._thread = threading.Thread(target=run, name=f"roiprompt-{kind}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> dict:
        """Block until the background work ends (tests, scripts); returns the job."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.job

    def load_study(self) -> None:
        """Read every image's size and thumbnail in the background (unreadable files are listed, not fatal)."""
        images = list(self.study.images)

        def work() -> None:
            for img in images:
                if self._cancel.is_set():
                    return
                self.study.load(img.id)
                self.job["done"] += 1
                self._touch(img.id)

        self._start("loading", len(images), work)

    def propagate(self) -> None:
        """Fit the one-shot method on every accepted image and segment every other readable image, in the
        background, one result at a time (accepted images are never touched)."""
        with self.state_lock:
            references = [(i, dict(m)) for i, m in self.accepted.items()]
        if not references:
            raise InputError("accept at least one annotated image as the reference before propagating")
        targets = [img.id for img in self.study.images if img.id not in self.accepted and not img.error]

        def work() -> None:
            self.job["message"] = f"fitting {self.method_name} on {len(references)} reference(s)"
            fit_start = time.perf_counter()
            method = self._fit(references)
            self.job.update(message="propagating", fit_seconds=time.perf_counter() - fit_start)
            for image_id in targets:
                if self._cancel.is_set():
                    return
                if image_id in self.accepted:  # accepted meanwhile: never overwritten
                    self.job["done"] += 1
                    continue
                try:
                    image = self.study.read(image_id)
                    preds = self.on_model(method.predict_all, image, source=self.study.get(image_id).name)
                except InputError as err:
                    self.failed[image_id] = str(err)
                else:
                    with self.state_lock:
                        if image_id not in self.accepted:  # a draft being drawn stays over the new result
                            self.results[image_id] = {s: Result.of(p.mask, p.scores) for s, p in preds.items()}
                self.job["done"] += 1
                self._touch(image_id)

        self._start("propagating", len(targets), work)

    def _fit(self, references: list[tuple[int, dict[str, np.ndarray]]]):
        """The one-shot method fitted on ``references`` ([(image id, {structure: mask})]): the last fitted one
        with the new references added (``add_reference``: the others are not refitted) when its references are
        the first ones unchanged, else a new fit."""
        from ..methods import load_method

        done = self._fitted_on or {}
        prefix = list(done) == [i for i, _ in references[: len(done)]] and all(
            done[i].keys() == m.keys() and all(np.array_equal(done[i][s], m[s]) for s in m)
            for i, m in references[: len(done)])

        def fit():
            if self.fitted is not None and done and prefix:
                for i, masks in references[len(done):]:
                    self.fitted.add_reference(self.study.read(i), masks, source=self.study.get(i).name)
                return self.fitted
            fitted = load_method(self.method_name, backbone=self.backbone(), **self.config)
            return fitted.set_reference([(self.study.read(i), masks) for i, masks in references],
                                        source=[self.study.get(i).name for i, _ in references])

        method = self.on_model(fit)
        self.fitted, self._fitted_on = method, dict(references)
        return method

    def load_references(self, folder: Path) -> list[int]:
        """Start from a fitted reference folder (see :func:`.references.load_references`); returns the ids shown
        as accepted."""
        from .references import load_references

        return load_references(self, Path(folder))

    def fitted_on_accepted(self):
        """The one-shot method fitted on the accepted images as they are now (refitted if they changed)."""
        with self.state_lock:
            references = [(i, dict(m)) for i, m in self.accepted.items()]
        return self._fit(references)

    # -- what the page lists ----------------------------------------------------------------------------------------
    def quality(self, image_id: int) -> float | None:
        """The image's flag: the lowest quality over its structures (None: no result, or no flag)."""
        values = [r.quality for r in self.results.get(image_id, {}).values() if r.quality is not None]
        return min(values) if values else None

    def image_state(self, image_id: int) -> dict:
        img = self.study.get(image_id)
        state = "error" if img.error else "reference" if image_id in self.accepted else (
            "edited" if image_id in self.drafts else "result" if image_id in self.results else "image")
        results = self.results.get(image_id, {})
        return {**img.summary(), "state": state, "quality": self.quality(image_id), "v": self.changed.get(image_id, 0),
                "structures": {s: {"quality": r.quality, "iou_pred": r.iou_pred} for s, r in results.items()},
                "failed": self.failed.get(image_id)}

    def overlay_thumbnail(self, image_id: int) -> bytes:
        colours = self.colours()
        return thumbnail(self.study.read(image_id), self.masks(image_id), colours=colours)

    def colours(self) -> dict[str, tuple[int, int, int]]:
        from ..data.overlay import STRUCTURE_COLOURS

        return {s: STRUCTURE_COLOURS[i % len(STRUCTURE_COLOURS)] for i, s in enumerate(self.structures)}

    def export(self, what: Sequence[str] = ("png", "nifti", "dicomseg", "csv", "reference", "report")) -> dict:
        """Write the study's masks and the rest to ``out`` (see :func:`.export.export_session`)."""
        from .export import export_session

        if self.busy():
            raise RoiPromptError(f"{self.job['kind']} is running; export when it has finished")
        return export_session(self, what)
