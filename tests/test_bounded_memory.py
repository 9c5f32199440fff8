"""Large images without full-resolution float copies (issue 20), and the same numbers as before.

Each bounded-memory path (the encoder's resize a row block and a channel at a time, masks upsampled one at a time
and thresholded, lazy full-resolution logits, overlays drawn in strips) is compared bit for bit with the
straightforward whole-image computation it replaced, written out here as the reference, on real BUS-BRA (grey)
and Kvasir-SEG (RGB) images, enlarged copies of them, and random shapes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

from roiprompt import SamPredictor
from roiprompt.data import read_image, write_overlay_png
from roiprompt.data import overlay as overlay_module
from roiprompt.models.backbones.base import image_to_tensor, resize_to_frame
from roiprompt.prompts import Frame, box_from_mask
from tests.conftest import data_root

S = 256


# -- the computations before issue 20, as references ------------------------------------------------------------
def reference_image_to_tensor(image: np.ndarray) -> torch.Tensor:
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1)[None]


def reference_preprocess(image: np.ndarray) -> torch.Tensor:
    """LiteMedSAM.preprocess as it was: the whole (1, 3, H, W) float32 image, resized, min-max normalised."""
    pixels = reference_image_to_tensor(image)
    frame = Frame(tuple(pixels.shape[2:]), S)
    resized = frame.resize_image(pixels)
    rh, rw = frame.resized_hw
    content = resized[..., :rh, :rw]
    lo, hi = content.amin(), content.amax()
    out = torch.zeros_like(resized)
    out[..., :rh, :rw] = (content - lo) / torch.clamp(hi - lo, min=1e-8)
    return out


def reference_overlay(path, image, masks, boxes=None, alpha=0.4):
    """write_overlay_png's raster as it was (whole-image float32), with its boxes and legend."""
    height, width = image.shape[:2]
    rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
    out = rgb.astype(np.float32)
    thickness = max(1, round(max(height, width) / 300))
    colours = {name: overlay_module.STRUCTURE_COLOURS[i] for i, name in enumerate(masks)}
    for name, mask in masks.items():
        colour = np.array(colours[name], np.float32)
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
    for name, mask in masks.items():
        edge = mask & ~ndimage.binary_erosion(mask, iterations=thickness)
        out[edge] = colours[name]
    canvas = Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for i, (x0, y0, x1, y1) in enumerate(boxes or []):
        draw.rectangle([x0, y0, x1, y1], outline=list(colours.values())[i], width=thickness)
    y = 2
    for name, colour in colours.items():
        left, top, right, bottom = draw.textbbox((4, y), name)
        draw.rectangle([left - 2, top - 1, right + 2, bottom + 1], fill=(0, 0, 0))
        draw.text((4, y), name, fill=colour)
        y = bottom + 3
    canvas.save(path, format="PNG")
    return np.asarray(Image.open(path))


# -- real images --------------------------------------------------------------------------------------------------
def _busbra() -> tuple[np.ndarray, np.ndarray]:
    root = data_root("busbra") / "BUSBRA"
    image = read_image(root / "Images" / "bus_0001-l.png")
    mask = np.asarray(Image.open(root / "Masks" / "mask_0001-l.png").convert("L")) > 127
    return image, mask


def _kvasir() -> tuple[np.ndarray, np.ndarray]:
    root = data_root("kvasir_seg") / "Kvasir-SEG"
    name = sorted(p.name for p in (root / "images").glob("*.jpg"))[0]
    image = read_image(root / "images" / name)
    mask = np.asarray(Image.open(root / "masks" / name).convert("L")) > 127
    return image, mask


def _enlarged(image: np.ndarray, mask: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The image and mask ``factor`` times larger (pixel repetition): real content at several megapixels."""
    return (np.repeat(np.repeat(image, factor, 0), factor, 1),
            np.repeat(np.repeat(mask, factor, 0), factor, 1))


@pytest.fixture(scope="module")
def real_images() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    grey, grey_mask = _busbra()
    rgb, rgb_mask = _kvasir()
    assert grey.ndim == 2 and rgb.ndim == 3
    return {"busbra": (grey, grey_mask), "kvasir": (rgb, rgb_mask),
            "busbra_x10": _enlarged(grey, grey_mask, 10),  # > 4 Mpx: resized in several row blocks
            "kvasir_x4": _enlarged(rgb, rgb_mask, 4)}


# -- the encoder's input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["busbra", "kvasir", "busbra_x10", "kvasir_x4"])
def test_preprocess_is_bit_identical_on_real_images(litemedsam, real_images, name):
    image = real_images[name][0]
    new = litemedsam.preprocess(image)
    old = reference_preprocess(image)
    assert torch.equal(new, old) and new.stride() == old.stride() and new.dtype == old.dtype


def test_image_to_tensor_unchanged(real_images):
    rng = np.random.default_rng(0)
    cases = [real_images["busbra"][0], real_images["kvasir"][0], real_images["busbra"][0][..., None],
             rng.uniform(0, 255, (31, 17)), rng.uniform(0, 255, (9, 12, 3)).astype(np.float32)]
    for image in cases:
        new, old = image_to_tensor(image), reference_image_to_tensor(image)
        assert torch.equal(new, old) and new.stride() == old.stride() and new.dtype == torch.float32


def test_resize_to_frame_matches_whole_image_resize():
    """Random shapes (downscaled, upscaled, slivers), grey, RGB and HxWx1, uint8 and float, and row blocks of
    every size: always frame.resize_image(image_to_tensor(image)) bit for bit."""
    rng = np.random.default_rng(1)
    shapes = [(1, 1), (1, 700), (700, 1), (255, 257), (300, 200), (1000, 3)]
    shapes += [tuple(int(v) for v in rng.integers(1, 1500, 2)) for _ in range(10)]
    for i, (h, w) in enumerate(shapes):
        kind = ("grey", "rgb", "hw1")[i % 3]
        shape = {"grey": (h, w), "rgb": (h, w, 3), "hw1": (h, w, 1)}[kind]
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        if i % 4 == 3:
            image = image.astype(np.float64) + rng.uniform(0, 1, shape)
        expected = Frame((h, w), S).resize_image(reference_image_to_tensor(image))
        got, frame = resize_to_frame(image, S)
        assert frame == Frame((h, w), S) and torch.equal(got, expected), (h, w, kind)
        plane = image if image.ndim == 2 else image[..., 0]
        for block in (1, w, 7 * w + 3):  # one row, one row exactly, several rows and a ragged last block
            assert torch.equal(frame.resize_plane(plane, block_pixels=block), expected[0, 0, :frame.resized_hw[0],
                                                                                       :frame.resized_hw[1]])


def test_resize_to_frame_refuses_what_image_to_tensor_refuses():
    from roiprompt.errors import InputError

    for bad in (np.zeros((4, 4, 2), np.uint8), np.zeros(5, np.uint8), np.full((3, 3), np.nan)):
        with pytest.raises(InputError):
            image_to_tensor(bad)
        with pytest.raises(InputError):
            resize_to_frame(bad, S)


# -- masks and logits at the original resolution --------------------------------------------------------------------
def test_masks_to_original_matches_thresholded_logits():
    rng = np.random.default_rng(2)
    for hw in [(327, 384), (600, 250), (1000, 3), (5, 7)]:
        frame = Frame(hw, S)
        low = torch.as_tensor(rng.normal(0, 3, (3, S, S)).astype(np.float32))
        logits = frame.logits_to_original(low[None])[0].numpy()
        masks = frame.masks_to_original(low)
        assert masks.dtype == bool and masks.shape == (3, *hw)
        assert np.array_equal(masks, logits > 0)
        assert np.array_equal(frame.masks_to_original(low.numpy(), threshold=1.5), logits > 1.5)


@pytest.mark.parametrize("name", ["busbra", "kvasir", "busbra_x10", "kvasir_x4"])
def test_predictor_masks_and_logits_are_bit_identical(litemedsam, real_images, name):
    image, target = real_images[name]
    predictor = SamPredictor(litemedsam)
    predictor.set_image(image)
    frame = Frame(image.shape[:2], S)
    box = box_from_mask(target, 0.05)
    embedding = litemedsam.encode_image(reference_preprocess(image))
    assert torch.equal(predictor.features, embedding.features)
    boxes = torch.as_tensor(frame.box_to_model(box), dtype=torch.float32)[None]
    for multimask in (False, True):
        with torch.inference_mode():
            low, iou = litemedsam.decode(embedding, None, None, boxes, None, multimask=multimask)
            logits = frame.logits_to_original(low.float())[0].numpy()  # the whole (K, H, W) float32, as before
        out = predictor.predict(box=box, multimask=multimask)
        assert np.array_equal(out.masks, logits > 0) and out.masks.dtype == bool
        assert np.array_equal(out.iou, iou[0].float().numpy())
        assert np.array_equal(out.low_res_logits, low[0].float().numpy())
        assert out._logits is None  # not computed until asked for
        assert np.array_equal(out.logits, logits) and out.logits is out.logits  # then computed once, kept
        mask, score, low_best = out.best()
        assert np.array_equal(mask, (logits > 0)[int(iou[0].argmax())]) and low_best.shape == (S, S)
    # segment-anything's vocabulary: return_logits puts the float logits in masks
    masks, scores, low_res = predictor.predict(box=box, multimask_output=True, return_logits=True)
    assert masks.dtype == np.float32 and np.array_equal(masks, logits)


# -- overlays -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strip", [None, 1, 5000])
def test_overlay_is_bit_identical(tmp_path, real_images, monkeypatch, strip):
    """The smallest strips (4 x the contour thickness), a few rows and the default: the same picture as the
    whole-image float32 pass,
    contours (thickness > 1 on the enlarged image) included."""
    if strip is not None:
        monkeypatch.setattr(overlay_module, "_STRIP_PIXELS", strip)
    for name in ("busbra", "kvasir_x4"):
        image, mask = real_images[name]
        h, w = mask.shape
        second = np.zeros_like(mask)
        second[h // 4: h // 2, w // 5: w // 2] = True  # overlaps the lesion: fill and contour order matter
        masks = {"lesion": mask, "other": second}
        boxes = [box_from_mask(mask).tolist(), box_from_mask(second).tolist()]
        got = np.asarray(Image.open(write_overlay_png(tmp_path / f"{name}.png", image, masks, boxes=boxes)))
        want = reference_overlay(tmp_path / f"{name}_ref.png", image, masks, boxes=boxes)
        assert np.array_equal(got, want), name


# -- the bound itself -------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS reset via /proc/self/clear_refs")
def test_segment_peak_memory_per_pixel(tmp_path):
    """Encoding, predicting and drawing a 16 Mpx grey image adds about 7.4 bytes per pixel to the peak RSS
    (before issue 20: 41): the bool mask, one float32 map while it is upsampled, PIL's RGB canvas of the overlay
    (4 bytes per pixel) and small strips."""
    script = textwrap.dedent("""
        import sys, numpy as np, torch
        import roiprompt.runtime.runner as runner
        runner.configure_cpu_allocator = lambda: False  # glibc's defaults: freed blocks go back, the peak is real
        from roiprompt import SamPredictor
        from roiprompt.data import write_overlay_png
        from roiprompt.models.backbones import load_backbone
        def hwm():
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) * 1024
        torch.set_num_threads(2)
        predictor = SamPredictor(load_backbone("litemedsam"))
        predictor.set_image(np.zeros((64, 64), np.uint8))
        predictor.predict(box=[8, 8, 40, 40])
        side = 4000
        y, x = np.mgrid[:side, :side].astype(np.float32)
        image = (40 + 100 * x / side + 80 * ((x - 1800) ** 2 + (y - 2000) ** 2 < 800 ** 2)).astype(np.uint8)
        del x, y
        open("/proc/self/clear_refs", "w").write("5")
        start = hwm()
        predictor.set_image(image)
        mask = predictor.predict(box=[900, 1100, 2700, 2900]).best()[0]
        write_overlay_png(sys.argv[1], image, {"roi": mask}, boxes=[[900, 1100, 2700, 2900]])
        print((hwm() - start) / image.size)
    """)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "o.png")], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONPATH": str(
                                Path(__file__).resolve().parents[1])}, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    bytes_per_pixel = float(result.stdout.split()[-1])
    assert bytes_per_pixel < 10, bytes_per_pixel


# -- one-shot (med_persam_plus): reference views, warping squares, clean-up -------------------------------------------
def reference_views_before(image, masks, count=8, seed=0, mirror=True, max_rotation=15.0, scale_range=(0.85, 1.15),
                           max_shift=0.08):
    """views.reference_views as it was: every view at once, whole-image grid and float32 copies."""
    import torch.nn.functional as F

    views = [(image, {k: np.asarray(m, bool) for k, m in masks.items()})]
    if mirror and count > 1:
        views.append((np.ascontiguousarray(image[:, ::-1]),
                      {k: np.ascontiguousarray(m[:, ::-1]) for k, m in masks.items()}))
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    pixels = torch.as_tensor(image.astype(np.float32))
    pixels = pixels[None, None] if pixels.ndim == 2 else pixels.permute(2, 0, 1)[None]
    names = list(masks)
    stack = torch.as_tensor(np.stack([np.asarray(masks[k], np.float32) for k in names]))[None]
    while len(views) < count:
        angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
        scale = rng.uniform(*scale_range)
        tx, ty = rng.uniform(-max_shift, max_shift, 2) * 2
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        theta = torch.tensor([[[cos, -sin * h / w, tx], [sin * w / h, cos, ty]]], dtype=torch.float32)
        grid = F.affine_grid(theta, (1, 1, h, w), align_corners=False)
        moved = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        moved_masks = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        gamma, gain = rng.uniform(0.7, 1.4), rng.uniform(0.85, 1.15)
        moved = (255.0 * (moved / 255.0).clamp(0, 1) ** gamma * gain).clamp(0, 255).round().to(torch.uint8)
        view = moved[0, 0].numpy() if image.ndim == 2 else moved[0].permute(1, 2, 0).numpy()
        views.append((np.ascontiguousarray(view), {k: moved_masks[0, j].numpy() > 0.5 for j, k in enumerate(names)}))
    return views


def _same_views(got, want) -> bool:
    return len(got) == len(want) and all(
        np.array_equal(a, b) and a.dtype == b.dtype and list(ma) == list(mb)
        and all(np.array_equal(ma[k], mb[k]) and ma[k].dtype == bool for k in ma)
        for (a, ma), (b, mb) in zip(got, want))


@pytest.mark.parametrize("name", ["busbra", "kvasir"])
def test_reference_views_are_bit_identical(real_images, name):
    from roiprompt.methods.med_persam_plus.views import iter_reference_views, reference_views

    image, mask = real_images[name]
    masks = {"lesion": mask, "box": np.zeros_like(mask)}
    masks["box"][10:60, 20:90] = True
    want = reference_views_before(image, masks, count=8, seed=3)
    assert _same_views(reference_views(image, masks, count=8, seed=3), want)
    for block in (1, 997, 50_000):  # one row per block, ragged blocks
        assert _same_views(list(iter_reference_views(image, masks, 8, 3, block_pixels=block)), want)
    assert _same_views(reference_views(image, masks, count=1), want[:1])
    assert _same_views(reference_views(image, masks, count=3, seed=3, mirror=False),
                       reference_views_before(image, masks, count=3, seed=3, mirror=False))


def test_warping_squares_are_bit_identical(real_images):
    import torch.nn.functional as F

    from roiprompt.methods.med_persam.warp_prior import grey_square, square_masks
    from roiprompt.prompts.transforms import resize_rows

    def grey_before(image, size):
        arr = torch.as_tensor(np.asarray(image, dtype=np.float32) / 255.0)
        arr = arr.mean(dim=-1) if arr.ndim == 3 else arr
        return F.interpolate(arr[None, None], size=(size, size), mode="bilinear", align_corners=False,
                             antialias=True)[0, 0]

    for name in ("busbra", "kvasir", "kvasir_x4"):
        image, mask = real_images[name]
        for size in (128, 256):
            want = grey_before(image, size)
            assert torch.equal(grey_square(image, size), want)
            if image.ndim == 3:  # the channel mean a few rows at a time, too
                rows = lambda r0, r1: torch.as_tensor(np.asarray(image[r0:r1], np.float32) / 255.0).mean(dim=-1)  # noqa: E731
                assert torch.equal(resize_rows(rows, image.shape[:2], (size, size), block_pixels=3 * image.shape[1]),
                                   want)
            masks = [mask, ~mask]
            stack = torch.as_tensor(np.stack([np.asarray(m, np.float32) for m in masks]))[None]
            assert torch.equal(square_masks(masks, size),
                               F.interpolate(stack, size=(size, size), mode="bilinear", align_corners=False,
                                             antialias=True)[0])


def test_clean_mask_is_bit_identical():
    from roiprompt.methods.med_persam_plus.candidates import clean_mask

    def clean_before(mask, keep, fill_holes, min_fraction=0.05):
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        if n > 1:
            index = np.arange(1, n + 1)
            size = ndimage.sum(np.ones(mask.shape), labels, index)
            kept = size >= min_fraction * size.max()
            if keep is not None:
                kept &= ndimage.maximum(keep, labels, index).astype(bool) | (size == size.max())
            mask = np.isin(labels, index[kept])
        return ndimage.binary_fill_holes(mask) if fill_holes else mask

    rng = np.random.default_rng(4)
    for i in range(12):
        h, w = (int(v) for v in rng.integers(1, 600, 2))
        mask = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.5, 6)) > rng.uniform(0.45, 0.55)
        keep = rng.random((h, w)) < 0.01 if i % 3 == 0 else None
        for fill in (False, True):
            got, want = clean_mask(mask, keep, fill), clean_before(mask, keep, fill)
            assert got.dtype == want.dtype == bool and np.array_equal(got, want)
