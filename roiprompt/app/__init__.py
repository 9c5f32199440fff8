"""``roiprompt app``: the clinician's loop in the browser. Open a study, annotate one image (box, clicks, brush),
propagate with the one-shot default, review the results worst quality first, correct and accept (k-shot), export;
and on the Classify tab, label a few images, train a few-shot classifier on their ROI masks and predict the rest
(:mod:`.classify`).

FastAPI plus one small page (``static/``), chosen over Gradio because the loop needs a canvas that takes boxes,
clicks and a brush on the image at its own pixels, a review grid that fills in while propagation runs, and
requests a test can drive in a real browser; the page (``app.js``, ``classify.js``) is ~500 lines over
:class:`Session`, which holds every rule.

    >>> from roiprompt.app import Session, Study, create_app
    >>> session = Session(Study("study/"), out="study-out/")
    >>> app = create_app(session)            # an ASGI app: uvicorn.run(app, host="127.0.0.1", port=7860)
"""

from .server import Served, create_app, serve
from .session import Session
from .study import Study

__all__ = ["Served", "Session", "Study", "create_app", "serve"]
