"""SAM, MedSAM, SAM 2 and CLIP backbones on tiny random models: in memory, saved to a folder, and from a .pth."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from roiprompt.errors import CheckpointError, InputError
from roiprompt.models.backbones import load_backbone
from roiprompt.models.backbones.clip import ClipBackbone
from roiprompt.models.backbones.sam import SamBackbone, sam_config_from_original
from roiprompt.models.backbones.sam2 import Sam2Backbone
from roiprompt.models.backbones.testing import save_tiny, tiny_model
from roiprompt.models.weights import sha256_of
from roiprompt.prompts.transforms import Frame

WRAPPERS = {"sam": SamBackbone, "sam2": Sam2Backbone}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread; OpenMP start-up dominates (and stalls on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {kind: save_tiny(kind, root / kind) for kind in ("sam", "sam2", "clip")}


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(50, 40, 3), dtype=np.uint8)  # portrait: the pad is on the right


def _prompts(kind: str, s: int, m: int) -> dict[str, torch.Tensor]:
    points = {"points": torch.tensor([[[0.3 * s, 0.2 * s], [0.5 * s, 0.6 * s]]]),
              "point_labels": torch.tensor([[1, 0]])}
    box = {"boxes": torch.tensor([[0.1 * s, 0.1 * s, 0.6 * s, 0.7 * s]])}
    return {"points": points, "box": box, "points+box": {**points, **box},
            "mask": {"mask_logits": torch.randn(1, 1, m, m, generator=torch.Generator().manual_seed(1))}}[kind]


@pytest.mark.parametrize("name", ["test-sam", "test-sam2"])
@pytest.mark.parametrize("prompt", ["points", "box", "points+box", "mask"])
@pytest.mark.parametrize("multimask", [False, True])
def test_decode_shapes(name, prompt, multimask, image):
    bb = load_backbone(name)
    pixels = bb.preprocess(image)
    assert pixels.shape == (1, 3, bb.input_size, bb.input_size)
    emb = bb.encode_image(pixels)
    assert emb.features.shape == (1, 32, bb.mask_size // 4, bb.mask_size // 4)
    logits, iou = bb.decode(emb, multimask=multimask, **_prompts(prompt, bb.input_size, bb.mask_size))
    k = 3 if multimask else 1
    assert logits.shape == (1, k, bb.mask_size, bb.mask_size) and iou.shape == (1, k)
    assert torch.isfinite(logits).all()


def test_sam2_high_res_maps(image):
    emb = load_backbone("test-sam2").encode_image(load_backbone("test-sam2").preprocess(image))
    assert emb.extra["high_res_0"].shape == (1, 4, 32, 32) and emb.extra["high_res_1"].shape == (1, 8, 16, 16)
    with pytest.raises(InputError, match="high_res_0"):
        load_backbone("test-sam2").decode(type(emb)(emb.features), boxes=torch.tensor([[1.0, 2.0, 30.0, 40.0]]))


@pytest.mark.parametrize("kind", ["sam", "sam2"])
def test_folder_reproduces_in_memory_model(kind, folders, image):
    loaded = load_backbone(kind, weights=str(folders[kind]))
    memory = WRAPPERS[kind](tiny_model(kind)).lock()
    assert loaded.weights_sha256 == sha256_of(folders[kind] / "model.safetensors")
    assert (loaded.input_size, loaded.mask_size) == (memory.input_size, memory.mask_size)
    pixels = loaded.preprocess(image)
    a, b = loaded.encode_image(pixels), memory.encode_image(pixels)
    torch.testing.assert_close(a.features, b.features)
    for prompt in ("points", "box", "points+box", "mask"):
        kw = _prompts(prompt, loaded.input_size, loaded.mask_size)
        for x, y in zip(loaded.decode(a, multimask=True, **kw), memory.decode(b, multimask=True, **kw)):
            torch.testing.assert_close(x, y)


def test_sam_coordinates_match_transformers_processor(folders, image):
    """Our Frame + decode == SamProcessor's prompt scaling + SamModel.forward: no double normalisation."""
    from transformers import SamImageProcessorPil, SamProcessor

    bb = load_backbone("sam", weights=str(folders["sam"]))
    s = bb.input_size
    processor = SamProcessor(image_processor=SamImageProcessorPil(size={"longest_edge": s},
                                                                 pad_size={"height": s, "width": s}))
    pts, box = [[12.0, 30.0], [25.0, 8.0]], [3.0, 5.0, 33.0, 44.0]  # original pixels of the 50x40 image
    inputs = processor(images=image, input_points=[[pts]], input_labels=[[[1, 0]]], input_boxes=[[box]],
                       return_tensors="pt")
    frame = Frame(image.shape[:2], s)
    ours_pts = torch.tensor(frame.points_to_model(np.array(pts)), dtype=torch.float32)[None]
    ours_box = torch.tensor(frame.box_to_model(np.array(box)), dtype=torch.float32)[None]
    torch.testing.assert_close(ours_pts, inputs["input_points"][:, 0].float())
    torch.testing.assert_close(ours_box, inputs["input_boxes"][:, 0].float())
    emb = bb.encode_image(bb.preprocess(image))
    logits, iou = bb.decode(emb, points=ours_pts, point_labels=torch.tensor([[1, 0]]), boxes=ours_box, multimask=True)
    ref = bb.model(image_embeddings=emb.features, input_points=inputs["input_points"].float(),
                   input_labels=inputs["input_labels"], input_boxes=inputs["input_boxes"].float())
    torch.testing.assert_close(logits, ref.pred_masks[:, 0])
    torch.testing.assert_close(iou, ref.iou_scores[:, 0])


@pytest.mark.parametrize("name, lo, hi", [("sam", -2.2, 2.7), ("medsam", 0.0, 1.0)])
def test_normalisation_and_zero_pad(name, lo, hi, folders, image):
    pixels = load_backbone(name, weights=str(folders["sam"])).preprocess(image)
    rh, rw = Frame(image.shape[:2], pixels.shape[-1]).resized_hw
    assert rh == pixels.shape[-1] > rw and pixels[..., rw:].abs().max() == 0  # portrait: pad (after normalising) is 0
    content = pixels[..., :rh, :rw]
    assert lo - 1e-4 <= content.min() and content.max() <= hi + 1e-4


def test_grayscale_and_bad_inputs(image):
    bb = load_backbone("test-sam")
    assert bb.preprocess(image[..., 0]).shape == (1, 3, 64, 64)
    with pytest.raises(InputError, match="expected HxW"):
        bb.preprocess(np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(InputError, match=r"expected \(B, 3, 64, 64\)"):
        bb.encode_image(torch.zeros(1, 3, 32, 32))
    emb = bb.encode_image(bb.preprocess(image))
    with pytest.raises(InputError, match="expected \\(1, 4\\)"):
        bb.decode(emb, boxes=torch.zeros(1, 2))
    with pytest.raises(InputError, match="mask_logits"):
        bb.decode(emb, mask_logits=torch.zeros(1, 1, 64, 64))


# -- checkpoint errors -----------------------------------------------------------------------------------------
def test_no_weights_explains_local_path():
    with pytest.raises(CheckpointError, match=r"weights='/path/to/folder'.*'facebook/sam-vit-base'.*allow_download"):
        load_backbone("sam")
    with pytest.raises(CheckpointError, match="wanglab/medsam-vit-base"):
        load_backbone("medsam")
    for name in ("sam2", "clip"):
        with pytest.raises(CheckpointError, match="no offline default"):
            load_backbone(name)


def test_bad_folders_name_the_path(tmp_path, folders):
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "nope"))):
        load_backbone("sam2", weights=str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=re.escape(str(empty)) + ".*no config.json"):
        load_backbone("clip", weights=str(empty))
    with pytest.raises(CheckpointError, match="model_type='clip'"):
        load_backbone("sam", weights=str(folders["clip"]))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((folders["sam"] / "config.json").read_text())
    torch.save({}, pickled / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_backbone("sam", weights=str(pickled))


def test_incomplete_weights_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = save_tiny("sam", tmp_path / "sam")
    state = load_file(folder / "model.safetensors")
    state.pop("mask_decoder.iou_token.weight")
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing keys: mask_decoder.iou_token.weight"):
        load_backbone("sam", weights=str(folder))


# -- original segment-anything .pth --------------------------------------------------------------------------------
def _to_segment_anything(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers SamModel keys -> segment-anything keys, written from segment_anything/modeling/*.py."""
    out = {"pixel_mean": torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1),
           "pixel_std": torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)}
    table = [(r"^vision_encoder\.layers\.(\d+)\.layer_norm(\d)", r"image_encoder.blocks.\1.norm\2"),
             (r"^vision_encoder\.layers\.", "image_encoder.blocks."),
             (r"^vision_encoder\.patch_embed\.projection", "image_encoder.patch_embed.proj"),
             (r"^vision_encoder\.neck\.conv1", "image_encoder.neck.0"),
             (r"^vision_encoder\.neck\.layer_norm1", "image_encoder.neck.1"),
             (r"^vision_encoder\.neck\.conv2", "image_encoder.neck.2"),
             (r"^vision_encoder\.neck\.layer_norm2", "image_encoder.neck.3"),
             (r"^vision_encoder\.", "image_encoder."),
             (r"shared_embedding\.positional_embedding", "pe_layer.positional_encoding_gaussian_matrix"),
             (r"\.point_embed\.", ".point_embeddings."),  # not not_a_point_embed
             (r"mask_embed\.conv1", "mask_downscaling.0"), (r"mask_embed\.layer_norm1", "mask_downscaling.1"),
             (r"mask_embed\.conv2", "mask_downscaling.3"), (r"mask_embed\.layer_norm2", "mask_downscaling.4"),
             (r"mask_embed\.conv3", "mask_downscaling.6"),
             (r"transformer\.layers\.(\d+)\.layer_norm(\d)", r"transformer.layers.\1.norm\2"),
             (r"layer_norm_final_attn", "norm_final_attn"),
             (r"upscale_conv1", "output_upscaling.0"), (r"upscale_layer_norm", "output_upscaling.1"),
             (r"upscale_conv2", "output_upscaling.3"),
             (r"\.proj_in\.", ".layers.0."), (r"\.proj_out\.", ".layers.2."),
             (r"(mlps\.\d+|prediction_head)\.layers\.0\.(weight|bias)$", r"\1.layers.1.\2")]
    for key, value in hf.items():
        if key == "shared_image_embedding.positional_embedding":
            continue
        new = key
        if ".proj_in." not in key and ".proj_out." not in key:
            new = re.sub(table[-1][0], table[-1][1], new)  # hidden MLP layer 0 -> 1 before the others move
        for pattern, repl in table[:-1]:
            new = re.sub(pattern, repl, new)
        out[new] = value.clone()
    return out


def test_segment_anything_pth_loads(tmp_path, folders, image):
    reference = tiny_model("sam")
    original = _to_segment_anything(reference.state_dict())
    for key in ("image_encoder.blocks.0.attn.qkv.weight", "image_encoder.blocks.1.norm2.bias",
                "image_encoder.neck.3.weight", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
                "prompt_encoder.mask_downscaling.6.weight", "prompt_encoder.point_embeddings.3.weight",
                "mask_decoder.transformer.norm_final_attn.weight", "mask_decoder.transformer.layers.1.norm4.bias",
                "mask_decoder.output_upscaling.1.weight", "mask_decoder.output_hypernetworks_mlps.3.layers.2.bias",
                "mask_decoder.iou_prediction_head.layers.1.weight"):
        assert key in original, key
    path = tmp_path / "sam_vit_tiny.pth"
    torch.save({"model": original}, path)

    config = sam_config_from_original(original)
    v, ref_v = config.vision_config, reference.config.vision_config
    for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size",
                  "window_size", "global_attn_indexes", "mlp_dim", "num_pos_feats"):
        assert getattr(v, field) == getattr(ref_v, field), field
    assert config.mask_decoder_config.iou_head_depth == reference.config.mask_decoder_config.iou_head_depth

    loaded = load_backbone("sam", weights=str(path))
    assert loaded.weights_sha256 == sha256_of(path)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    folder = load_backbone("sam", weights=str(folders["sam"]))
    pixels = loaded.preprocess(image)
    a, b = loaded.encode_image(pixels), folder.encode_image(pixels)
    kw = _prompts("points+box", loaded.input_size, loaded.mask_size)
    torch.testing.assert_close(loaded.decode(a, **kw), folder.decode(b, **kw))


def test_pth_with_foreign_keys_is_refused(tmp_path):
    original = _to_segment_anything(tiny_model("sam").state_dict())
    original["image_encoder.extra.weight"] = torch.zeros(1)
    torch.save(original, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"bad\.pth.*unexpected keys: vision_encoder\.extra\.weight"):
        load_backbone("sam", weights=str(tmp_path / "bad.pth"))
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth: not a segment-anything state dict"):
        load_backbone("medsam", weights=str(tmp_path / "other.pth"))


# -- CLIP -----------------------------------------------------------------------------------------------------------
def test_clip_image_and_text(folders, image):
    clip = load_backbone("clip", weights=str(folders["clip"]))
    memory = ClipBackbone(tiny_model("clip")).lock()
    pixels = clip.preprocess(image)
    assert pixels.shape == (1, 3, 32, 32)
    emb = clip.encode_image(pixels)
    assert emb.features.shape == (1, 32, 4, 4)
    assert emb.extra["cls"].shape == (1, 32) and emb.extra["image_embeds"].shape == (1, 16)
    reference = clip.model.get_image_features(pixel_values=pixels).pooler_output
    torch.testing.assert_close(emb.extra["image_embeds"], reference)
    torch.testing.assert_close(emb.features, memory.encode_image(pixels).features)

    texts = ["a benign lesion", "an irregular mass, 3 cm"]
    text = clip.encode_text(texts)
    assert text.shape == (2, 16)
    tok = clip.tokenizer(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")  # 2nd is cut
    torch.testing.assert_close(text, clip.model.get_text_features(**tok).pooler_output)
    torch.testing.assert_close(clip.encode_text(texts, normalize=True).norm(dim=-1), torch.ones(2))
    assert clip.preprocess(image[..., 0]).shape == (1, 3, 32, 32)


def test_clip_center_crop(folders, image):
    pixels = load_backbone("clip", weights=str(folders["clip"]), resize="center_crop").preprocess(image)
    assert pixels.shape == (1, 3, 32, 32) and (pixels[..., :, -1] != 0).any()  # no pad column


def test_clip_without_tokenizer(tmp_path, image):
    folder = save_tiny("clip", tmp_path / "clip", tokenizer=False)
    clip = load_backbone("clip", weights=str(folder))
    assert clip.encode_image(clip.preprocess(image)).features.shape == (1, 32, 4, 4)
    with pytest.raises(CheckpointError, match=re.escape(str(folder)) + ".*lacks a tokenizer"):
        clip.encode_text(["a lesion"])
    ids = torch.tensor([[clip.model.config.text_config.bos_token_id, 3, clip.model.config.text_config.eos_token_id]])
    assert clip.encode_token_ids(ids).shape == (1, 16)


def test_clip_cls_attention_bias(image):
    clip = load_backbone("test-clip")
    pixels = clip.preprocess(image)
    plain = clip.encode_image(pixels)
    mask = torch.zeros(1, 4, 4)
    mask[:, 1:3, 1:3] = 1.0
    beta = torch.tensor(1.0, requires_grad=True)
    bias = ClipBackbone.cls_attention_bias(beta * torch.log(1e-2 + mask))  # (1, 1, 17, 17)
    assert bias.shape == (1, 1, 17, 17) and bias[:, :, 1:].abs().max() == 0 and bias[0, 0, 0, 0] == 0
    zero = clip.encode_image(pixels, attention_bias={-1: torch.zeros_like(bias)})
    torch.testing.assert_close(zero.extra["cls"], plain.extra["cls"])
    focused = clip.encode_image(pixels, attention_bias={i: bias for i in (-2, -1)})
    assert not torch.allclose(focused.extra["cls"], plain.extra["cls"])
    last_only = clip.encode_image(pixels, attention_bias={-1: bias})  # CLS row only: patch tokens unchanged
    torch.testing.assert_close(last_only.features, plain.features)
    focused.extra["image_embeds"].sum().backward()
    assert beta.grad is not None and beta.grad != 0
    with pytest.raises(InputError, match="out of range"):
        clip.encode_image(pixels, attention_bias={5: bias})


def test_tiny_configs_round_trip_json(folders):
    for kind, folder in folders.items():
        assert json.loads((folder / "config.json").read_text())["model_type"] == kind


def test_clip_text_with_slots_matches_the_plain_text_and_takes_gradients():
    from roiprompt.models.backbones import load_backbone

    clip = load_backbone("test-clip")
    words = clip.model.text_model.embeddings.token_embedding
    # a slot holding the embedding of the word "b" encodes exactly like the text with "b" in that place
    b_id = clip.tokenizer("b", add_special_tokens=False)["input_ids"][0]
    slot = words.weight[b_id].detach()[None]
    assert torch.allclose(clip.text_with_slots("a [unused0] c", slot), clip.encode_text(["a b c"]), atol=1e-5)
    slots = torch.randn(2, clip.text_token_dim, requires_grad=True)
    out = clip.text_with_slots(["x [unused0]", "longer y [unused0] z"], slots)  # one text per row, padded
    assert out.shape == (2, clip.text_dim)
    out.sum().backward()
    assert slots.grad is not None and (slots.grad.abs().sum(1) > 0).all()
    one = clip.text_with_slots("longer y [unused0] z", slots[1:].detach())
    assert torch.allclose(out[1], one[0], atol=1e-5)
    with pytest.raises(InputError, match="no placeholder"):
        clip.text_with_slots("a b", slot)


# -- corrupt folders: every loader names the file at fault ----------------------------------------------------------
@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    """A tiny random BERT folder (what the minilm loader reads), without a tokenizer: the weights fail first."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny") / "bert"
    config = BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                        max_position_embeddings=16)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        BertModel(config).save_pretrained(folder)
    return folder


def _copy(kind: str, folders, bert_folder, tmp_path):
    import shutil

    return shutil.copytree(bert_folder if kind == "minilm" else folders[kind], tmp_path / kind)


_DAMAGE = {"garbage": lambda data: b"not a safetensors file at all", "truncated": lambda data: data[:len(data) // 2],
           "empty": lambda data: b""}


@pytest.mark.parametrize("kind", ["sam", "sam2", "clip", "minilm"])
@pytest.mark.parametrize("damage", list(_DAMAGE))
def test_a_corrupt_safetensors_file_is_named(kind, damage, folders, bert_folder, tmp_path):
    """Before: transformers raised safetensors' own SafetensorError, which names no file."""
    weights = _copy(kind, folders, bert_folder, tmp_path) / "model.safetensors"
    weights.write_bytes(_DAMAGE[damage](weights.read_bytes()))
    with pytest.raises(CheckpointError, match=re.escape(f"{weights}: not a readable safetensors file") +
                       ".*truncated or corrupt"):
        load_backbone(kind, weights=str(weights.parent))


@pytest.mark.parametrize("kind, config", [
    ("sam", "[1, 2]"),  # valid JSON but not an object: the loader called .get() on it (AttributeError)
    ("sam", '{"model_type": "sam", "vision_config": {"hidden_size": "wide"}}'),  # a field of the wrong type
    ("minilm", '{"model_type": "bert", "hidden_size": [8]}'),
    ("minilm", '{"model_type": "be'),  # truncated
])
def test_a_bad_config_is_named(kind, config, folders, bert_folder, tmp_path):
    folder = _copy(kind, folders, bert_folder, tmp_path)
    (folder / "config.json").write_text(config)
    with pytest.raises(CheckpointError, match=re.escape(str(folder / "config.json"))):
        load_backbone(kind, weights=str(folder))


def test_a_config_that_builds_no_model_names_the_folder(folders, tmp_path):
    folder = _copy("clip", folders, None, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["vision_config"]["patch_size"] = 0
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=re.escape(f"{folder}: cannot load as CLIPModel (ZeroDivisionError")):
        load_backbone("clip", weights=str(folder))
