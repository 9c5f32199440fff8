"""Where the training sentences come from: an :class:`AttributeSource` turns (image, ROI mask, keyword) into the
attribute sentence of methods.md §4.1.

* :class:`MeasuredAttributes` (offline default): :func:`~.attributes.measure_attributes` + ``describe``.
* Opt-in, the paper's LMM step: :class:`OpenAICompatibleAttributes` (any OpenAI-compatible chat-completions
  server) or :class:`TransformersVLMAttributes` (a local transformers vision-language model). Both replies go
  through :func:`parse_attribute_json` and :func:`~.attributes.render_sentence`, like the measured record.
"""

from __future__ import annotations

import base64
import io
import json
import re
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import CheckpointError, InputError, RoiPromptError
from .attributes import (MAX_NUMBER, NUMBER_WORDS, OFFICIAL_KEYS, describe, location_word, measure_attributes,
                         render_sentence, roi_image)

__all__ = ["AttributeSource", "MeasuredAttributes", "OpenAICompatibleAttributes", "PROMPT",
           "TransformersVLMAttributes", "parse_attribute_json"]

PROMPT = ("The image shows one or more {keyword}s of a medical image; everything else is set to black. Answer with "
          "one JSON object only, with keys \"number\" (how many separate regions, 1-5), \"location\" (where in the "
          "image: center, top left, bottom right, ... or the [x, y] centre as fractions of width and height), "
          "\"shape\" (round, oval or irregular), \"size\" (small, medium or large) and \"color\" (one word).")

_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_COUNT_WORDS = {**{w: i for i, w in enumerate(NUMBER_WORDS) if i}, "single": 1, "multiple": 2, "several": 3}
_WORD_FIXES = {"centre": "center", "middle": "center", "upper": "top", "lower": "bottom"}


def _parse_number(value: Any) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(min(MAX_NUMBER, max(1, round(value))))
    for token in re.findall(r"[a-z]+|\d+(?:\.\d+)?", str(value).lower()):  # "2", "two", "2 polyps", "a single"
        if token[0].isdigit():
            return _parse_number(float(token))
        if token in _COUNT_WORDS:
            return _COUNT_WORDS[token]
    raise InputError(f"attribute 'number' must be a count (1-5), got {value!r}")


def _parse_location(value: Any, image_hw: tuple[int, int] | None) -> str:
    if isinstance(value, str) and re.search(r"[a-z]", value, re.I):
        words = re.sub(r"[^a-z ]", " ", value.lower()).split()
        words = [_WORD_FIXES.get(w, w) for w in words if w not in ("the", "of", "image", "in")]
        return " ".join(words) or "center"
    try:
        numbers = [float(v) for v in (_NUMBER_RE.findall(value) if isinstance(value, str) else np.ravel(value))]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) not in (2, 4):
        raise InputError(f"attribute 'location' must be words, [x, y] or [x0, y0, x1, y1], got {value!r}")
    cx, cy = numbers if len(numbers) == 2 else ((numbers[0] + numbers[2]) / 2, (numbers[1] + numbers[3]) / 2)
    if max(numbers) > 1:  # pixel coordinates
        if image_hw is None:
            raise InputError(f"location {value!r} is in pixels; give image_hw to turn it into fractions")
        cx, cy = cx / image_hw[1], cy / image_hw[0]
    return location_word(cx, cy)


def parse_attribute_json(text: str, image_hw: tuple[int, int] | None = None) -> dict[str, Any]:
    """Parse an LMM reply (bare or ```-fenced JSON) into {number: int, location, shape, size, color: str}.

    A coordinate location ([x, y] or a box, fractions, or pixels with ``image_hw``) becomes words by
    :func:`location_word`; numbers may be given as strings ("2", "two").

    Raises:
        InputError: no JSON object, invalid JSON, missing keys, or a value that cannot be read.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError("attribute reply is empty; expected a JSON object with keys " + ", ".join(OFFICIAL_KEYS))
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S | re.I)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    try:
        record = json.loads(body[start:end + 1]) if 0 <= start < end else None
    except json.JSONDecodeError as exc:
        raise InputError(f"attribute reply is not valid JSON ({exc.msg}): {text[:200]!r}") from None
    if not isinstance(record, dict):
        raise InputError(f"attribute reply holds no JSON object: {text[:200]!r}")
    record = {str(k).strip().lower(): v for k, v in record.items()}
    record.setdefault("color", record.get("colour"))
    missing = [k for k in OFFICIAL_KEYS if record.get(k) in (None, "")]
    if missing:
        raise InputError(f"attribute reply lacks key(s) {missing}; expected {list(OFFICIAL_KEYS)}: {text[:200]!r}")
    words = {k: " ".join(str(record[k]).strip().lower().split()) for k in ("shape", "size", "color")}
    return {"number": _parse_number(record["number"]), "location": _parse_location(record["location"], image_hw),
            **words}


class AttributeSource(ABC):
    """Turns one (image, ROI mask, dataset keyword) into the attribute sentence."""

    @abstractmethod
    def describe(self, image: np.ndarray, mask: np.ndarray, keyword: str, *, source: str = "image") -> str:
        """The attribute sentence of ``mask`` in ``image``; ``source`` names the image in error messages."""


class MeasuredAttributes(AttributeSource):
    """The offline default: :func:`measure_attributes` + :func:`describe` (``extended`` adds the ablation clause)."""

    def __init__(self, extended: bool = False) -> None:
        self.extended = extended

    def describe(self, image: np.ndarray, mask: np.ndarray, keyword: str, *, source: str = "image") -> str:
        return describe(measure_attributes(image, mask, source), keyword, self.extended)


def _reply_sentence(reply: str, keyword: str, image_hw: tuple[int, int]) -> str:
    r = parse_attribute_json(reply, image_hw)
    return render_sentence(r["number"], r["location"], r["shape"], r["size"], r["color"], keyword)


class OpenAICompatibleAttributes(AttributeSource):
    """The paper's LMM step through an OpenAI-compatible chat-completions server (vLLM, llama.cpp, Ollama, ...).

    Example: ``OpenAICompatibleAttributes("http://localhost:8000/v1", "llava-hf/llava-1.5-13b-hf")``.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60) -> None:
        base = base_url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model, self.api_key, self.timeout = model, api_key, timeout

    def describe(self, image: np.ndarray, mask: np.ndarray, keyword: str, *, source: str = "image") -> str:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(roi_image(image, mask, source)).convert("RGB").save(buffer, format="PNG")
        data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        body = {"model": self.model, "temperature": 0.2, "messages": [{"role": "user", "content": [
            {"type": "text", "text": PROMPT.format(keyword=keyword)},
            {"type": "image_url", "image_url": {"url": data_url}}]}]}
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {self.api_key}"}
                                                           if self.api_key else {})}
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = json.loads(response.read().decode("utf-8"))
            content = reply["choices"][0]["message"]["content"]
        except urllib.error.HTTPError as exc:
            raise RoiPromptError(f"{self.url}: HTTP {exc.code} {exc.reason} for {source}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RoiPromptError(f"{self.url}: cannot reach the attribute server ({exc})") from exc
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise RoiPromptError(f"{self.url}: not a chat-completions response for {source} ({exc!r})") from exc
        if isinstance(content, list):  # some servers answer a list of content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return _reply_sentence(content, keyword, mask.shape[:2])


class TransformersVLMAttributes(AttributeSource):
    """The paper's LMM step with a local transformers vision-language model folder (e.g. a saved LLaVA-1.5).

    Loaded on first use with ``local_files_only=True``; decoding is greedy (deterministic; our choice, the paper
    samples at temperature 0.2, which is close to greedy).
    """

    def __init__(self, model_path: str | Path, max_new_tokens: int = 128) -> None:
        self.model_path, self.max_new_tokens = Path(model_path).expanduser(), max_new_tokens
        self._processor: Any = None
        self._model: Any = None  # loaded on first describe()

    def _load(self) -> None:
        if self._model is not None:
            return
        if not (self.model_path / "config.json").is_file():
            raise CheckpointError(f"{self.model_path}: not a transformers model folder (no config.json); give the "
                                  "local folder of a vision-language model with its processor files")
        import transformers

        model_class = (getattr(transformers, "AutoModelForImageTextToText", None)
                       or getattr(transformers, "AutoModelForVision2Seq"))
        try:
            self._processor = transformers.AutoProcessor.from_pretrained(self.model_path, local_files_only=True)
            self._model = model_class.from_pretrained(self.model_path, local_files_only=True).eval()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{self.model_path}: cannot load a vision-language model and its processor "
                                  f"({type(exc).__name__}: {exc})") from exc

    def describe(self, image: np.ndarray, mask: np.ndarray, keyword: str, *, source: str = "image") -> str:
        import torch
        from PIL import Image

        roi = Image.fromarray(roi_image(image, mask, source)).convert("RGB")
        self._load()
        prompt = PROMPT.format(keyword=keyword)
        if getattr(self._processor, "chat_template", None):
            text = self._processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
                add_generation_prompt=True)
        else:  # the LLaVA-1.5 prompt format
            text = f"USER: <image>\n{prompt} ASSISTANT:"
        inputs = self._processor(images=roi, text=text, return_tensors="pt")
        with torch.no_grad():
            output = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return _reply_sentence(self._processor.batch_decode(new_tokens, skip_special_tokens=True)[0], keyword,
                               mask.shape[:2])
