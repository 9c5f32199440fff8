"""The HTTP API of ``roiprompt app`` (FastAPI) and the page it serves (``static/``): a thin translation of
:class:`~roiprompt.app.session.Session` calls. Images are named by id, never by path; nothing is fetched from the
internet (the page's script and style are served from here)."""

from __future__ import annotations

import io
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image

from ..errors import InputError, RoiPromptError
from .masks import check_structure
from .session import Session
from .study import MAX_UPLOAD_BYTES

STATIC = Path(__file__).parent / "static"
#: Hosts a request may name when the app listens on localhost (a page on another site cannot reach it by DNS
#: rebinding).
LOCAL_HOSTS = ["127.0.0.1", "localhost", "[::1]"]


def _png(array: np.ndarray, fast: bool = True) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1 if fast else 6)
    return buffer.getvalue()


def _decode_mask_png(data: bytes, hw: tuple[int, int]) -> np.ndarray:
    """A mask the page painted (PNG at the image's size): inside where alpha or red is >= 128."""
    from ..data.io import max_pixels_limit

    try:
        im = Image.open(io.BytesIO(data))
        if im.width * im.height > max_pixels_limit():
            raise InputError(f"painted mask of {im.width}x{im.height} is over the pixel limit")
        im.load()
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise InputError(f"painted mask: not a readable PNG ({err})") from None
    if (im.height, im.width) != tuple(hw):
        raise InputError(f"painted mask is {im.width}x{im.height}, but the image is {hw[1]}x{hw[0]}")
    arr = np.asarray(im.convert("RGBA"))
    return (arr[..., 3] >= 128) & (arr[..., 0] >= 128) if arr[..., 3].min() < 255 else arr[..., 0] >= 128


def create_app(session: Session, local_only: bool = True) -> FastAPI:
    """The FastAPI app over ``session``; ``local_only`` refuses requests naming another host."""
    # telemetry off: no traces, metrics or logs are recorded, and no exporter is configured from the environment
    app = FastAPI(title="roiprompt", docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False})
    if local_only:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOCAL_HOSTS)

    @app.exception_handler(RoiPromptError)
    async def _input_error(request: Request, err: RoiPromptError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=400)

    def image_id(value: int) -> int:
        session.study.get(value)  # InputError (400) for an id the study does not have
        return value

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/state")
    def state() -> dict:
        s = session
        return {"study": str(s.study.folder), "out": str(s.out), "method": s.method_name, "version": s.version,
                "structures": s.structures, "colours": {k: "#%02x%02x%02x" % c for k, c in s.colours().items()},
                "accepted": list(s.accepted), "job": {k: v for k, v in s.job.items() if k != "traceback"},
                "images": [s.image_state(img.id) for img in s.study.images], "classify": s.classify.state()}

    @app.get("/api/images/{i}/image.png")
    def image_png(i: int) -> Response:
        return Response(_png(session.study.read(image_id(i))), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    @app.get("/api/images/{i}/thumb.jpg")
    def thumb(i: int) -> Response:
        img = session.study.load(image_id(i))
        if img.thumb is None:
            raise HTTPException(404, img.error or "not loaded")
        return Response(img.thumb, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/images/{i}/overlay.jpg")
    def overlay(i: int) -> Response:
        return Response(session.overlay_thumbnail(image_id(i)), media_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})

    @app.get("/api/images/{i}/masks/{structure}.png")
    def mask_png(i: int, structure: str) -> Response:
        mask = session.masks(image_id(i)).get(check_structure(structure))
        if mask is None:
            raise HTTPException(404, f"no {structure} mask on this image")
        return Response(_png(mask.astype(np.uint8) * 255), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    @app.post("/api/images/{i}/encode")
    def encode(i: int) -> dict:
        return {"seconds": session.encode(image_id(i))}

    @app.post("/api/images/{i}/segment")
    async def segment(i: int, request: Request) -> dict:
        body = await _json(request)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(session.segment, image_id(i), body.get("structure"), body.get("box"),
                                       body.get("points") or [])

    @app.put("/api/images/{i}/masks/{structure}")
    async def put_mask(i: int, structure: str, request: Request) -> dict:
        """The page's brushed mask: the PNG bytes as the body."""
        data = await _body(request)
        hw = session.study.read(image_id(i)).shape[:2]
        mask = _decode_mask_png(data, hw)
        session.set_mask(i, structure, mask)
        return {"area": int(mask.sum())}

    @app.post("/api/images/{i}/masks/{structure}/file")
    async def load_mask(i: int, structure: str, file: UploadFile = File(...)) -> dict:
        """An existing mask file (PNG, JPEG, NIfTI, ...), read as the CLI reads ``--reference-mask``."""
        from ..data import read_mask
        from ..files import atomic_write_bytes

        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise InputError(f"{file.filename}: over the upload limit of {MAX_UPLOAD_BYTES // 2**20} MiB")
        hw = session.study.read(image_id(i)).shape[:2]
        name = Path(file.filename or "mask.png").name
        suffix = "".join(Path(name).suffixes[-2:]) or ".png"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"mask{suffix}"
            atomic_write_bytes(path, data)
            lossy = suffix.lower() in (".jpg", ".jpeg")
            try:
                mask = read_mask(path, image_hw=hw, threshold=128 if lossy else None)
            except InputError as err:
                raise InputError(str(err).replace(str(path), name)) from None
        session.set_mask(i, structure, mask)
        return {"area": int(mask.sum())}

    @app.post("/api/images/{i}/accept")
    def accept(i: int) -> dict:
        return {"structures": list(session.accept(image_id(i)))}

    @app.post("/api/images/{i}/unaccept")
    def unaccept(i: int) -> dict:
        session.unaccept(image_id(i))
        return {}

    @app.post("/api/images/{i}/discard")
    def discard(i: int) -> dict:
        session.discard(image_id(i))
        return {}

    @app.post("/api/structures")
    async def add_structure(request: Request) -> dict:
        return {"structures": session.add_structure((await _json(request)).get("name"))}

    @app.post("/api/propagate")
    def propagate() -> dict:
        session.propagate()
        return session.job

    @app.post("/api/stop")
    def stop() -> dict:
        session.stop()
        return {}

    @app.post("/api/export")
    def export() -> dict:
        return session.export()

    @app.get("/api/export/report.html")
    def report() -> FileResponse:
        from .export import REPORT

        path = session.out / REPORT
        if not path.is_file():
            raise HTTPException(404, "export first")
        return FileResponse(path, media_type="text/html")

    # -- the classify tab ---------------------------------------------------------------------------------------
    @app.put("/api/images/{i}/label")
    async def set_label(i: int, request: Request) -> dict:
        session.classify.set_label(image_id(i), (await _json(request)).get("label"))
        return {}

    @app.post("/api/classify/labels")
    async def labels_csv(file: UploadFile = File(...)) -> dict:
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise InputError(f"{file.filename}: over the upload limit of {MAX_UPLOAD_BYTES // 2**20} MiB")
        return session.classify.read_labels_csv(data, Path(file.filename or "labels.csv").name)

    @app.post("/api/classify/train")
    async def train(request: Request) -> dict:
        session.classify.train((await _json(request)).get("method"))
        return session.job

    @app.post("/api/classify/predict")
    def classify_predict() -> dict:
        session.classify.predict()
        return session.job

    @app.get("/api/images/{i}/attention.png")
    def attention(i: int) -> Response:
        return Response(session.classify.attention_png(image_id(i)), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    @app.post("/api/classify/export")
    def classify_export() -> dict:
        if session.busy():
            raise RoiPromptError(f"{session.job['kind']} is running; export when it has finished")
        return session.classify.export()

    @app.post("/api/upload")
    async def upload(files: list[UploadFile] = File(...)) -> dict:
        saved, errors = [], []
        for f in files:
            data = await f.read(MAX_UPLOAD_BYTES + 1)
            try:
                saved.append(session.study.save_upload(f.filename or "upload", data).name)
            except InputError as err:
                errors.append(str(err))
        new = session.study.rescan()
        if new and not session.busy():
            session.load_study()
        return {"saved": saved, "errors": errors, "new": [img.id for img in new]}

    return app


async def _body(request: Any) -> bytes:
    """The request body, refused past the upload limit."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_UPLOAD_BYTES:
            raise InputError(f"request body over the limit of {MAX_UPLOAD_BYTES // 2**20} MiB")
    return bytes(data)


async def _json(request: Any) -> dict:
    try:
        body = json.loads(await _body(request) or b"{}")
    except ValueError as err:
        raise InputError(f"request body is not JSON ({err})") from None
    if not isinstance(body, dict):
        raise InputError("request body must be a JSON object")
    return body


class Served:
    """The app served on a free localhost port in a background thread (tests, benchmarks, notebooks):
    ``with Served(session) as url: ...``; the server stops when the block ends."""

    def __init__(self, session: Session) -> None:
        import socket

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.session = session
        self.server = uvicorn.Server(uvicorn.Config(create_app(session), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="roiprompt-app", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RoiPromptError("the app did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: Any) -> None:
        self.session.stop()
        self.server.should_exit = True
        self.thread.join(10)


def serve(session: Session, host: str = "127.0.0.1", port: int = 7860, log_level: str = "warning") -> None:
    """Serve the app until interrupted (loading the study in the background)."""
    import uvicorn

    session.load_study()
    uvicorn.run(create_app(session, local_only=host in ("127.0.0.1", "localhost", "::1")), host=host, port=port,
                log_level=log_level)
