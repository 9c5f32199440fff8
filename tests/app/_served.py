"""Helpers to call the app over HTTP (served for real by :class:`roiprompt.app.server.Served`) and a JSRT study."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path



def call(url: str, method: str = "GET", body=None, raw: bytes | None = None, headers: dict | None = None,
         content_type: str | None = None) -> tuple[int, bytes]:
    """(status, body bytes) of one request; JSON ``body`` or ``raw`` bytes."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def multipart(field: str, files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """(body, content type) of a multipart form with ``files`` [(file name, bytes)] under ``field``."""
    boundary = "roiprompt-test-boundary"
    parts = []
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def jsrt_study(folder: Path, n: int = 6) -> tuple[Path, list]:
    """``n`` JSRT test images as PNGs in ``folder`` -> (folder, their samples: image and heart/lung masks)."""
    from PIL import Image

    from roiprompt.data import load_dataset
    from tests.conftest import data_root

    data = load_dataset("jsrt", root=data_root("jsrt").parent).split("test")
    folder.mkdir(parents=True, exist_ok=True)
    samples = [data[i] for i in range(n)]
    for s in samples:
        Image.fromarray(s.image).save(folder / f"{s.id}.png")
    return folder, samples
