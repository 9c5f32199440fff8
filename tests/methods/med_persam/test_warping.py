"""Med-PerSAM's warping model (methods.md §1.1-1.2): identity start, exact warps, losses, synthetic pairs,
seeded fitting, and recovery of a known shift of a real JSRT radiograph."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import roiprompt
from roiprompt.errors import InputError
from roiprompt.methods.med_persam.warping import (FlowUNet, fit_warping, lncc_loss, predict_flow,
                                                  random_affine_elastic, refine_flow, smoothness_loss,
                                                  soft_dice_loss, upsample_flow, warp)
from tests.conftest import data_root

N = 128


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Fit on one thread: these small convs gain little from a second one, and on a busy 2-core machine the
    thread barriers of a second thread make fitting ~3x slower (87 s instead of 26 s for 150 steps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def jsrt_128() -> tuple[torch.Tensor, torch.Tensor]:
    """First JSRT radiograph as a (128, 128) grey image in [0, 1] and its two lung masks (2, 128, 128), soft."""
    sample = roiprompt.load_dataset("jsrt", root=data_root("jsrt").parent)[0]
    image = torch.tensor(sample.image, dtype=torch.float32)[None, None]
    image = (image - image.min()) / (image.max() - image.min())
    masks = torch.stack([torch.tensor(sample.masks[k], dtype=torch.float32) for k in ("left_lung", "right_lung")])
    resize = dict(size=(N, N), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(image, **resize)[0, 0], F.interpolate(masks[None], **resize)[0]


def constant_flow(dx: float, dy: float, size: int = N) -> torch.Tensor:
    return torch.tensor([dx, dy]).view(1, 2, 1, 1).expand(1, 2, size, size)


def dice(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0.5, b > 0.5
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


# -- network and warping -----------------------------------------------------------------------------------------
def test_flow_unet_starts_at_identity(jsrt_128):
    model = FlowUNet(generator=torch.Generator().manual_seed(0))
    assert 50_000 < sum(p.numel() for p in model.parameters()) < 150_000  # "lightweight": ~0.1 M
    image, masks = jsrt_128
    flow = predict_flow(model, image, image.flip(-1))
    assert flow.shape == (1, 2, N, N) and flow.abs().max() < 1e-3
    assert torch.allclose(warp(masks[None], flow), masks[None], atol=1e-3)
    with pytest.raises(InputError, match="divisible by 16"):
        model(torch.zeros(1, 2, 100, 100))


def test_warp_with_constant_flow_shifts_by_that_many_pixels():
    mask = torch.zeros(1, 1, N, N)
    mask[..., 40:60, 50:80] = 1.0
    out = warp(mask, constant_flow(3.0, -2.0))  # out(x, y) = mask(x + 3, y - 2): content moves by (-3, +2)
    expected = torch.zeros_like(mask)
    expected[..., 42:62, 47:77] = 1.0
    assert torch.equal(out, expected)
    soft = warp(mask, constant_flow(0.5, 0.25))  # sub-pixel: soft masks stay soft and keep their area
    assert 0.0 <= soft.min() and soft.max() <= 1.0 and 0 < (soft % 1).count_nonzero()
    assert torch.isclose(soft.sum(), mask.sum())
    with pytest.raises(InputError, match="upsample_flow"):
        warp(mask, constant_flow(1.0, 1.0, 64))


def test_upsample_flow_scales_values():
    flow = upsample_flow(constant_flow(1.5, -2.0), 256)
    assert flow.shape == (1, 2, 256, 256)
    assert torch.allclose(flow[0, 0], torch.tensor(3.0)) and torch.allclose(flow[0, 1], torch.tensor(-4.0))
    mask = torch.zeros(1, 1, 256, 256)
    mask[..., 80:120, 100:160] = 1.0
    expected = torch.zeros_like(mask)
    expected[..., 84:124, 97:157] = 1.0
    assert torch.allclose(warp(mask, flow), expected, atol=1e-4)


# -- losses and synthetic pairs ----------------------------------------------------------------------------------
def test_losses(jsrt_128):
    image = jsrt_128[0][None, None]
    shifted = warp(image, constant_flow(3.0, 0.0))
    assert lncc_loss(image, image) < -0.85 and lncc_loss(image, image * 0.5 + 0.2) < -0.8  # ~ local affine invariant
    assert lncc_loss(image, shifted) > lncc_loss(image, image) + 0.3
    noise = torch.rand(1, 1, N, N, generator=torch.Generator().manual_seed(1))
    assert lncc_loss(image, noise) > -0.1
    assert smoothness_loss(constant_flow(4.0, -3.0)) == 0
    assert smoothness_loss(torch.randn(1, 2, N, N)) > 0.5
    mask = (jsrt_128[1] > 0.5).float()
    assert soft_dice_loss(mask, mask) < 1e-6 and soft_dice_loss(mask, 1 - mask) > 1 - 1e-6


def test_random_affine_elastic_is_seeded_and_plausible(jsrt_128):
    image, masks = jsrt_128
    a = random_affine_elastic(image, masks, torch.Generator().manual_seed(3))
    b = random_affine_elastic(image, masks, torch.Generator().manual_seed(3))
    c = random_affine_elastic(image, masks, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    warped, warped_masks = a
    assert warped.shape == (N, N) and warped_masks.shape == masks.shape
    assert 0 <= warped.min() and warped.max() <= 1 and 0 <= warped_masks.min() and warped_masks.max() <= 1
    ratio = warped_masks.sum() / masks.sum()
    assert 0.6 < ratio < 1.45  # scale 0.85-1.15 squared, plus the elastic part
    assert 0.2 < dice(warped_masks, masks) < 0.99  # moved, but not beyond recognition


# -- fitting -----------------------------------------------------------------------------------------------------
def test_fit_is_seeded_and_leaves_the_global_rng_alone(jsrt_128):
    image, masks = jsrt_128
    target = image.flip(-1)
    state = torch.get_rng_state()
    runs = [fit_warping(image, masks, [target], iterations=3, seed=s).state_dict() for s in (0, 0, 1)]
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])
    synthetic_only = fit_warping(image, masks, [], iterations=2, batch=2)
    assert synthetic_only.training is False


def test_fit_rejects_bad_inputs(jsrt_128):
    image, masks = jsrt_128
    with pytest.raises(InputError, match="targets\\[0\\]"):
        fit_warping(image, masks, [image[:64]], iterations=1)
    with pytest.raises(InputError, match="extra_pairs\\[0\\] masks"):
        fit_warping(image, masks, extra_pairs=[(image, masks[:1])], iterations=1)
    with pytest.raises(InputError, match="batch"):
        fit_warping(image, masks, [image], batch=1, iterations=1)
    with pytest.raises(InputError, match="NaN"):
        fit_warping(image * float("nan"), masks, iterations=1)


def test_fit_recovers_a_known_shift_of_a_real_radiograph(jsrt_128):
    image, masks = jsrt_128
    shift = torch.tensor([6.0, -4.0])  # content moves by +6 px in x, -4 px in y
    target = warp(image[None, None], constant_flow(-6.0, 4.0))[0, 0]
    target_masks = warp(masks[None], constant_flow(-6.0, 4.0))[0]
    model = fit_warping(image, masks, [target], iterations=150, seed=0, extra_pairs=[(target, target_masks)])
    flow = predict_flow(model, image, target)
    before, after = dice(masks, target_masks), dice(warp(masks[None], flow)[0], target_masks)
    assert after > max(0.9, before + 0.1), (before, after)
    lungs = target_masks.sum(0) > 0.5
    mean_flow = torch.stack([flow[0, 0][lungs].mean(), flow[0, 1][lungs].mean()])
    assert torch.allclose(mean_flow, -shift, atol=2.0), mean_flow  # the flow points back to the reference


def test_refine_flow_recovers_a_shift_from_zero_and_validates(jsrt_128):
    image, masks = jsrt_128
    target = warp(image[None, None], constant_flow(-5.0, 3.0))[0, 0]
    target_masks = warp(masks[None], constant_flow(-5.0, 3.0))[0]
    flow = refine_flow(image, target, torch.zeros(1, 2, N, N), iterations=60)
    before, after = dice(masks, target_masks), dice(warp(masks[None], flow)[0], target_masks)
    assert after > max(0.9, before + 0.1), (before, after)
    assert not flow.requires_grad
    assert torch.equal(refine_flow(image, target, flow, iterations=0), flow)
    with pytest.raises(InputError, match="flow must be"):
        refine_flow(image, target, torch.zeros(1, 2, 64, 64))
