"""Starting a session from a fitted reference folder: the one a ``oneshot --save-reference`` run or an earlier
export wrote, so that ``roiprompt demo`` (or any CLI run) continues in the browser without annotating again."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from .session import Session


def load_references(session: "Session", folder: Path) -> list[int]:
    """Start from a fitted reference folder (``oneshot --save-reference``, an export's ``reference/``): its
    method is used as fitted, and each reference whose file is in the study (matched by file name) is shown
    as accepted. Returns the ids of those images.

    Raises:
        InputError: not a fitted one-shot folder, tampered, or fitted on another backbone.
    """
    from ..methods import load_fitted, method_info
    from ..methods.references import saved_references
    from ..methods.saving import read_fitted

    record, tensors = read_fitted(folder)
    if method_info(record["method"]).task != "oneshot":
        raise InputError(f"{folder}: holds a fitted {record['method']!r}, not a one-shot method")
    references = saved_references(record["state"], tensors)
    by_name = {img.input.path.name: img.id for img in session.study.images if img.input.slice is None}
    method = session.on_model(load_fitted, folder, session.backbone())
    found = []
    with session.state_lock:
        session.method_name = record["method"]
        for ref in references:
            image_id = by_name.get(Path(ref["source"]).name)
            if image_id is None:
                continue
            masks = {s: np.asarray(m, bool) for s, m in ref["masks"].items()}
            for s in masks:
                session.add_structure(s)
            session.accepted[image_id] = masks
            found.append(image_id)
            session._touch(image_id)
        # propagation reuses the loaded method as long as the accepted images are these, in this order
        fitted_on = {i: session.accepted[i] for i in found} if len(found) == len(references) else None
        session.fitted, session._fitted_on = method, fitted_on
    return found
