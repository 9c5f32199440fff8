"""ROI attributes for conceptual text prompts (methods.md §4.1, §4.5): synthetic shapes with known answers, the
sentence, the CSV, the LMM reply parser, a fake OpenAI-compatible server, and real Kvasir-SEG / BUS-BRA / JSRT masks."""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
import torch
from PIL import Image

from roiprompt.data import load_dataset
from roiprompt.errors import CheckpointError, DataError, InputError, RoiPromptError
from roiprompt.methods.concept_text.attributes import (
    CSV_COLUMNS, PALETTE, describe, location_word, measure_attributes, read_attributes_csv, render_sentence,
    roi_image, write_attributes_csv)
from roiprompt.methods.concept_text.sources import (
    MeasuredAttributes, OpenAICompatibleAttributes, TransformersVLMAttributes, parse_attribute_json)
from tests.conftest import data_root

H = W = 256
YY, XX = np.mgrid[:H, :W]
THETA, RADIUS = np.arctan2(YY - 128, XX - 128), np.hypot(XX - 128, YY - 128)
GREY = np.full((H, W), 128, np.uint8)


def disc(cx: float, cy: float, r: float) -> np.ndarray:
    return (XX - cx) ** 2 + (YY - cy) ** 2 <= r * r


def paint(mask: np.ndarray, inside, outside=128) -> np.ndarray:
    """An image with value/colour ``inside`` under the mask and ``outside`` elsewhere."""
    image = np.empty(mask.shape + np.shape(inside), np.uint8)
    image[...] = outside
    image[mask] = inside
    return image


@pytest.mark.parametrize("r, size", [(10, "small"), (40, "medium"), (80, "large")])
def test_centred_disc_is_round_center_and_sized_by_area(r, size):
    a = measure_attributes(GREY, disc(128, 128, r))
    assert (a.number, a.shape, a.location, a.size) == (1, "round", "center", size)
    assert a.circularity >= 0.9 and a.axis_ratio < 1.05 and a.solidity >= 0.9  # pi/4 x edge count: ~1 on a disc
    assert a.area_fraction == pytest.approx(np.pi * r * r / (H * W), rel=0.03)
    assert a.centre == pytest.approx((0.5, 0.5), abs=0.01)


def test_ellipse_3_to_1_is_oval():
    a = measure_attributes(GREY, ((XX - 128) / 60) ** 2 + ((YY - 128) / 20) ** 2 <= 1)
    assert a.shape == "oval" and a.axis_ratio == pytest.approx(3.0, abs=0.1) and a.solidity >= 0.95


@pytest.mark.parametrize("name", ["cross", "star", "line"])
def test_cross_star_and_line_are_not_round(name):
    mask = {"cross": ((abs(XX - 128) < 8) & (abs(YY - 128) < 60)) | ((abs(YY - 128) < 8) & (abs(XX - 128) < 60)),
            "star": RADIUS <= 60 * (0.55 + 0.45 * np.abs(np.cos(2.5 * THETA)) ** 3),
            "line": (YY == 100) & (XX > 20) & (XX < 200)}[name]
    a = measure_attributes(GREY, mask)
    assert a.circularity < 0.8
    assert a.shape == ("oval" if name == "line" else "irregular")  # a 1-px line is convex and elongated


def test_location_words_follow_the_official_rule():
    assert location_word(0.5, 0.5) == "center"
    assert location_word(0.4, 0.6) == "center"  # +-0.1 inclusive
    assert location_word(0.39, 0.5) == "center left" and location_word(0.5, 0.61) == "bottom center"
    assert location_word(0.9, 0.1) == "top right" and location_word(0.2, 0.8) == "bottom left"
    a = measure_attributes(GREY, disc(30, 30, 10))
    assert (a.location, a.size, a.shape) == ("top left", "small", "round")
    assert measure_attributes(GREY, disc(128, 220, 20)).location == "bottom center"
    assert measure_attributes(GREY, disc(220, 128, 20)).location == "center right"


def test_two_discs_are_counted_and_plural_and_specks_are_not():
    mask = disc(60, 128, 15) | disc(190, 128, 15)
    a = measure_attributes(GREY, mask)
    assert a.number == 2 and a.location == "center"  # union box of both
    text = describe(a, "polyp area")
    assert text.startswith("two round small grey polyp areas, located in the center"), text
    speck = mask.copy()
    speck[5, 5] = True  # 1 px < 1 % of the mask: noise, not a third region
    assert measure_attributes(GREY, speck).number == 2
    many = np.zeros((H, W), bool)
    for i in range(7):
        many |= disc(20 + 35 * i, 128, 8)
    assert measure_attributes(GREY, many).number == 5  # capped


def test_grey_colour_words():
    mask = disc(128, 128, 30)
    assert measure_attributes(paint(mask, 30), mask).colour == "dark"
    assert measure_attributes(paint(mask, 230), mask).colour == "bright"
    assert measure_attributes(paint(mask, 140), mask).colour == "grey"  # within 0.1 of the image median
    rgb_grey = np.repeat(paint(mask, 30)[..., None], 3, axis=2)  # RGB with equal channels counts as greyscale
    assert measure_attributes(rgb_grey, mask).colour == "dark"


@pytest.mark.parametrize("rgb, names", [((190, 60, 50), {"red"}), ((235, 160, 170), {"pink"}),
                                        ((225, 200, 60), {"yellow"}), ((120, 60, 150), {"purple"}),
                                        ((245, 245, 240), {"white"}), ((110, 70, 35), {"brown"})])
def test_rgb_colour_is_the_nearest_palette_name(rgb, names):
    mask = disc(128, 128, 30)
    a = measure_attributes(paint(mask, rgb, (40, 90, 40)), mask)
    assert a.colour in names and a.colour in PALETTE


def test_extended_attributes():
    mask = disc(128, 128, 30)
    dark = measure_attributes(paint(mask, 50, 200), mask)  # dark disc on bright background
    assert dark.contrast == "hypo-intense" and dark.contrast_value == pytest.approx((50 - 200) / 255, abs=1e-6)
    assert dark.texture == "homogeneous" and dark.intensity_std == pytest.approx(0.0) and dark.margin == "smooth"
    bright = measure_attributes(paint(mask, 200, 50), mask)
    assert bright.contrast == "hyper-intense" and measure_attributes(paint(mask, 130), mask).contrast == "iso-intense"
    noisy = np.random.default_rng(0).integers(0, 256, (H, W), dtype=np.uint8)
    assert measure_attributes(noisy, mask).texture == "heterogeneous"
    assert measure_attributes(GREY, RADIUS <= 50 * (1 + 0.25 * np.cos(5 * THETA))).margin == "lobulated"
    assert measure_attributes(GREY, RADIUS <= 50 * (1 + 0.15 * np.sign(np.cos(24 * THETA)))).margin == "irregular"
    text = describe(dark, "tumor area", extended=True)
    assert text == ("one round medium dark tumor area, located in the center of the image. It has a smooth margin, "
                    "is hypo-intense relative to its surroundings and has a homogeneous texture.")
    assert describe(dark, "tumor area") == text.split(" It has")[0]


def test_text_changes_with_the_roi():
    source = MeasuredAttributes()
    base = source.describe(GREY, disc(128, 128, 20), "polyp area")
    moved = source.describe(GREY, disc(40, 220, 20), "polyp area")
    grown = source.describe(GREY, disc(128, 128, 80), "polyp area")
    assert base == "one round small grey polyp area, located in the center of the image."
    assert moved == "one round small grey polyp area, located in the bottom left of the image."
    assert grown == "one round large grey polyp area, located in the center of the image."
    assert MeasuredAttributes(extended=True).describe(GREY, disc(128, 128, 20), "polyp area").startswith(base + " It")


def test_bad_inputs_are_rejected():
    with pytest.raises(InputError, match=r"case_7\.png.*ROI mask is empty"):
        measure_attributes(GREY, np.zeros((H, W), bool), source="case_7.png")
    with pytest.raises(InputError, match=r"case_7\.png.*must match"):
        measure_attributes(GREY, np.ones((H, W + 1), bool), source="case_7.png")
    with pytest.raises(InputError, match="empty"):
        roi_image(GREY, np.zeros((H, W), bool))
    with pytest.raises(InputError, match="keyword"):
        render_sentence(1, "center", "round", "small", "red", "")


def test_csv_round_trip(tmp_path):
    rows = [(f"case{i}", measure_attributes(GREY, disc(60 + 60 * i, 100, 10 + 10 * i)), "") for i in range(3)]
    rows = [(i, a, describe(a, "tumor area, \"quoted\"")) for i, a, _ in rows]  # commas and quotes survive
    path = write_attributes_csv(tmp_path / "attributes.csv", rows)
    header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[:7] == ["id", "number", "location", "shape", "size", "color", "sentence"]
    assert tuple(header) == CSV_COLUMNS and "margin" in header[7:]
    assert read_attributes_csv(path) == {i: s for i, _, s in rows}
    (tmp_path / "bad.csv").write_text("name,text\na,b\n", encoding="utf-8")
    with pytest.raises(DataError, match="'id' and 'sentence'"):
        read_attributes_csv(tmp_path / "bad.csv")


def test_parse_attribute_json():
    plain = '{"number": 1, "location": "center", "shape": "round", "size": "small", "color": "pink"}'
    expected = {"number": 1, "location": "center", "shape": "round", "size": "small", "color": "pink"}
    assert parse_attribute_json(plain) == expected
    fenced = ('Sure! Here is the record:\n```json\n{"Number": "2", "location": "the upper left", "shape": "Oval",'
              ' "size": "medium", "colour": "Red"}\n```\nAnything else?')
    assert parse_attribute_json(fenced) == {"number": 2, "location": "top left", "shape": "oval", "size": "medium",
                                            "color": "red"}
    coords = dict(expected, number="two polyps", location=[0.8, 0.85])
    assert parse_attribute_json(json.dumps(coords))["location"] == "bottom right"
    assert parse_attribute_json(json.dumps(coords))["number"] == 2
    box = dict(expected, location="[0.05, 0.4, 0.35, 0.6]")  # box centre (0.2, 0.5)
    assert parse_attribute_json(json.dumps(box))["location"] == "center left"
    pixels = dict(expected, location=[200, 20])
    assert parse_attribute_json(json.dumps(pixels), image_hw=(100, 400))["location"] == "top center"
    with pytest.raises(InputError, match="in pixels"):
        parse_attribute_json(json.dumps(pixels))
    with pytest.raises(InputError, match=r"lacks key\(s\) \['size', 'color'\]"):
        parse_attribute_json('{"number": 1, "location": "center", "shape": "round"}')
    with pytest.raises(InputError, match="no JSON object"):
        parse_attribute_json("I cannot see any polyp.")
    with pytest.raises(InputError, match="not valid JSON"):
        parse_attribute_json('{"number": 1, "location": }')
    with pytest.raises(InputError, match="'number'"):
        parse_attribute_json(json.dumps(dict(expected, number="many")))


class _FakeChatServer(BaseHTTPRequestHandler):
    requests: list[dict] = []
    reply = ""
    status = 200

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers["Content-Length"])
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                    "body": json.loads(self.rfile.read(length))})
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": type(self).reply}}]})
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args):
        pass


@pytest.fixture()
def chat_server():
    server = HTTPServer(("127.0.0.1", 0), _FakeChatServer)
    _FakeChatServer.requests, _FakeChatServer.status = [], 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_compatible_source_against_a_local_server(chat_server):
    _FakeChatServer.reply = ('```json\n{"number": "1", "location": [0.2, 0.2], "shape": "round", "size": "small", '
                             '"color": "pink"}\n```')
    image = paint(disc(50, 50, 12), (200, 90, 90), (20, 120, 20))
    source = OpenAICompatibleAttributes(chat_server + "/", "llava-1.5-13b", api_key="k-test", timeout=10)
    text = source.describe(image, disc(50, 50, 12), "polyp area")
    assert text == "one round small pink polyp area, located in the top left of the image."
    (request,) = _FakeChatServer.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer k-test"
    body = request["body"]
    assert body["model"] == "llava-1.5-13b" and body["temperature"] == 0.2
    parts = {part["type"]: part for part in body["messages"][0]["content"]}
    assert "number" in parts["text"]["text"] and "polyp area" in parts["text"]["text"]
    url = parts["image_url"]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    assert sent.shape == (H, W, 3) and (sent[~disc(50, 50, 12)] == 0).all()  # background zeroed
    assert (sent[disc(50, 50, 12)] == (200, 90, 90)).all()

    _FakeChatServer.reply = '{"number": 1, "location": "center"}'
    with pytest.raises(InputError, match="lacks key"):
        source.describe(image, disc(50, 50, 12), "polyp area")
    _FakeChatServer.status = 500
    with pytest.raises(RoiPromptError, match="HTTP 500"):
        source.describe(image, disc(50, 50, 12), "polyp area")


def test_transformers_source_is_lazy_and_explains_missing_models(tmp_path):
    source = TransformersVLMAttributes(tmp_path / "no-model")  # nothing loaded yet
    with pytest.raises(CheckpointError, match="no config.json"):
        source.describe(GREY, disc(128, 128, 20), "polyp area")

    class Processor:  # stands in for a real processor + model to check prompting, slicing and parsing
        chat_template = "x"

        def apply_chat_template(self, conversation, add_generation_prompt):
            assert conversation[0]["content"][0] == {"type": "image"} and add_generation_prompt
            return "PROMPT"

        def __call__(self, images, text, return_tensors):
            assert images.size == (W, H) and text == "PROMPT"
            return {"input_ids": torch.zeros((1, 4), dtype=torch.long)}

        def batch_decode(self, tokens, skip_special_tokens):
            assert tokens.shape == (1, 3)  # only the new tokens
            return ['{"number": 3, "location": "bottom right", "shape": "irregular", "size": "large", '
                    '"color": "white"}']

    class Model:
        def generate(self, input_ids, max_new_tokens, do_sample):
            return torch.zeros((1, 7), dtype=torch.long)

    source._processor, source._model = Processor(), Model()
    assert source.describe(GREY, disc(128, 128, 20), "lung area") == (
        "three irregular large white lung areas, located in the bottom right of the image.")


def test_real_masks():
    kvasir = load_dataset("kvasir_seg", root=data_root("kvasir_seg").parent)
    for i in range(4):
        sample = kvasir[i]
        a = measure_attributes(sample.image, sample.masks["polyp"], sample.id)
        assert a.colour in PALETTE and a.number >= 1, a
        assert "polyp area" in describe(a, "polyp area", extended=True)
    busbra = load_dataset("busbra", root=data_root("busbra").parent, label="pathology")
    for i in range(4):
        sample = busbra[i]
        a = measure_attributes(sample.image, sample.masks["lesion"], sample.id)
        assert a.colour in ("dark", "grey", "bright") and a.contrast == "hypo-intense", a  # lesions are hypoechoic
        assert "tumor area" in describe(a, "tumor area")
    jsrt = load_dataset("jsrt", root=data_root("jsrt").parent)
    for i in range(4):
        sample = jsrt[i]
        attrs = {name: measure_attributes(sample.image, mask, sample.id) for name, mask in sample.masks.items()}
        # The patient's left lung is on the image's right (radiological convention; checked on the data).
        assert "right" in attrs["left_lung"].location and "left" in attrs["right_lung"].location, attrs
        for lung in ("left_lung", "right_lung"):
            assert attrs[lung].size in ("medium", "large") and attrs[lung].colour in ("dark", "grey")
            assert attrs[lung].contrast == "hypo-intense"
        heart = attrs["heart"]
        assert "top" not in heart.location and "left" not in heart.location, heart
        assert 0.45 <= heart.centre[0] <= 0.7 and heart.centre[1] >= 0.45 and heart.size == "medium"
        assert attrs["left_clavicle"].location == "top right" and attrs["right_clavicle"].location == "top left"
        assert "heart area" in describe(heart, "heart area")
