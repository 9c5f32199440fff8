"""Prototype point selection (Med-PerSAM §1.3 steps 1-5, PerSAM): synthetic feature maps with a known
foreground, the padding rule, the thin-mask fallback, and real LiteMedSAM features of one JSRT radiograph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import roiprompt
from roiprompt.errors import InputError
from roiprompt.prompts.points import (candidate_regions, kernel_size, mask_prototype, persam_points,
                                      quadrant_split, select_points, similarity_map)
from roiprompt.prompts.transforms import Frame
from tests.conftest import data_root

S, G, C = 256, 64, 8  # model frame, feature grid, channels
VALID = Frame((300, 400), S).valid_region(S)  # (192, 256): the bottom 64 rows are padding


def disc(cx: float, cy: float, r: float, size: int = S) -> np.ndarray:
    ys, xs = np.mgrid[:size, :size]
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r ** 2


def feature_map(foreground: np.ndarray, padding_sign: float = 1.0, seed: int = 0) -> torch.Tensor:
    """(C, 64, 64): e0 on cells mostly covered by ``foreground`` (S x S), e1 elsewhere, small noise, and
    ``padding_sign * e0`` in the padding, so an unmasked arg-max (+1) or arg-min (-1) would land there."""
    g = torch.Generator().manual_seed(seed)
    cover = torch.nn.functional.adaptive_avg_pool2d(torch.as_tensor(foreground, dtype=torch.float32)[None, None],
                                                    G)[0, 0]
    feats = 0.05 * torch.randn(C, G, G, generator=g)
    feats[1] += 1.0
    fg = cover > 0.5
    feats[:, fg] = 0.05 * torch.randn(C, int(fg.sum()), generator=g)
    feats[0, fg] += 1.0
    rows = VALID[0] * G // S
    feats[:, rows:] = 0.0
    feats[0, rows:] = padding_sign
    return feats


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return disc(128, 140, 40)  # reaches y = 180; a dilated ring around a shifted copy crosses into the padding


# -- prototype and similarity -------------------------------------------------------------------------------------
def test_prototype_is_the_foreground_vector(truth):
    feats = feature_map(truth)
    proto = mask_prototype(feats, truth)
    assert proto.shape == (C,)
    assert torch.isclose(proto.norm(), torch.tensor(1.0))
    assert proto[0] > 0.99  # the foreground direction e0
    # area weighting: soft masks and (1, C, h, w) features give the same direction
    assert torch.allclose(mask_prototype(feats[None], truth.astype(np.float32) * 0.5), proto, atol=1e-6)


def test_similarity_map_shape_and_range(truth):
    feats = feature_map(truth)
    sim = similarity_map(mask_prototype(feats, truth), feats, size=S)
    assert sim.shape == (S, S) and sim.dtype == np.float32
    assert -1.0 <= sim.min() and sim.max() <= 1.0 + 1e-6
    inner = disc(128, 140, 30)
    far = ~disc(128, 140, 50)
    far[VALID[0] - 8:] = False  # bilinear upsampling blends the last valid rows with the padding
    assert sim[inner].min() > 0.9 and sim[far].max() < 0.3


def test_prototype_rejects_empty_mask_and_bad_shapes():
    feats = torch.zeros(C, G, G)
    with pytest.raises(InputError, match="no foreground"):
        mask_prototype(feats, np.zeros((S, S), bool))
    with pytest.raises(InputError, match=r"\(C, h, w\)"):
        mask_prototype(torch.zeros(G, G), np.ones((S, S), bool))
    with pytest.raises(InputError, match="channels"):
        similarity_map(torch.ones(C + 1), feats)


# -- candidate regions and subregions ----------------------------------------------------------------------------
@pytest.mark.parametrize("area, k", [(4, 3), (100, 3), (1600, 7), (10_000, 15), (40_000, 31)])
def test_kernel_size_is_odd_and_at_least_3(area, k):
    assert kernel_size(area) == k


def test_candidate_regions_inside_core_and_outside_ring(truth):
    positive, negative = candidate_regions(truth)
    assert positive.any() and negative.any()
    assert not (positive & ~truth).any()  # P inside M
    assert not (negative & truth).any()  # N outside M
    k = kernel_size(truth.sum())
    assert not (negative & ~disc(128, 140, 40 + k)).any()  # and no further than the kernel


def test_thin_mask_falls_back_to_one_pixel():
    line = np.zeros((S, S), bool)
    line[100:102, 50:150] = True  # 2 px wide: a 3x3 erosion removes it
    positive, _ = candidate_regions(line)
    assert positive.sum() == 1 and (positive & line).sum() == 1
    assert np.argwhere(positive)[0].tolist() in ([100, 99], [100, 100], [101, 99], [101, 100])  # near centroid
    sim = np.zeros((S, S), np.float32)
    sim[101, 60] = 0.9  # the most similar pixel inside the mask...
    sim[10, 10] = 1.0  # ...wins over a more similar one outside it
    positive, _ = candidate_regions(line, sim)
    assert np.argwhere(positive).tolist() == [[101, 60]]
    with pytest.raises(InputError, match="empty"):
        candidate_regions(np.zeros((S, S), bool))


def test_quadrant_split():
    zone = np.zeros((8, 8), bool)
    zone[1:7, 1:7] = True
    parts = quadrant_split(zone, (4.0, 4.0))
    assert len(parts) == 4 and [p.sum() for p in parts] == [9, 9, 9, 9]
    assert (np.sum(parts, axis=0) == zone).all()  # disjoint, and together the zone
    assert parts[0][1, 1] and parts[1][1, 6] and parts[2][6, 1] and parts[3][6, 6]  # TL, TR, BL, BR
    corner = np.zeros((8, 8), bool)
    corner[0, 0] = True
    assert len(quadrant_split(corner, (4.0, 4.0))) == 1  # empty quadrants are skipped


# -- points ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding_sign", [1.0, -1.0])
@pytest.mark.parametrize("estimate", [(134, 144, 40), (128, 146, 46)], ids=["shifted", "too-large-into-padding"])
def test_select_points_follow_similarity_and_avoid_padding(truth, padding_sign, estimate):
    feats = feature_map(truth, padding_sign)
    sim = similarity_map(mask_prototype(feats, truth), feats)
    estimate = disc(*estimate)  # an imperfect mask estimate (the warped reference mask); its ring nears the padding
    points, labels = select_points(sim, estimate.astype(np.float32), VALID)
    assert points.shape == (8, 2) and labels.tolist() == [1] * 4 + [0] * 4
    x, y = points[:, 0].astype(int), points[:, 1].astype(int)
    assert (y < VALID[0]).all() and (x < VALID[1]).all()  # never in the padding
    pos, neg = labels == 1, labels == 0
    assert estimate[y[pos], x[pos]].all() and truth[y[pos], x[pos]].all()  # positives: in M and in the object
    assert not estimate[y[neg], x[neg]].any() and not truth[y[neg], x[neg]].any()  # negatives: background
    cx, cy = np.argwhere(estimate)[:, ::-1].mean(axis=0)
    quadrants = {(bool(px >= cx), bool(py >= cy)) for px, py in points[pos]}
    assert len(quadrants) == 4  # spread: one positive per quadrant


def test_select_points_thin_mask_and_errors():
    sim = np.random.default_rng(0).random((S, S)).astype(np.float32)
    line = np.zeros((S, S), bool)
    line[100:102, 50:150] = True
    points, labels = select_points(sim, line, (S, S))
    assert labels.tolist().count(1) == 1 and 1 <= labels.tolist().count(0) <= 4
    with pytest.raises(InputError, match="persam_points"):
        select_points(sim, np.zeros((S, S), bool), (S, S))
    padded_only = np.zeros((S, S), bool)
    padded_only[220:240, 10:20] = True
    with pytest.raises(InputError, match="valid region"):
        select_points(sim, padded_only, VALID)
    with pytest.raises(InputError, match="valid_hw"):
        select_points(sim, line, (S + 1, S))
    with pytest.raises(InputError, match="same"):
        select_points(sim[:128], line, (S, S))


@pytest.mark.parametrize("padding_sign", [1.0, -1.0])
def test_persam_points(truth, padding_sign):
    feats = feature_map(truth, padding_sign)
    sim = similarity_map(mask_prototype(feats, truth), feats)
    points, labels = persam_points(sim, VALID)
    assert points.shape == (2, 2) and labels.tolist() == [1, 0]
    (px, py), (nx, ny) = points.astype(int)
    assert py < VALID[0] and ny < VALID[0]
    assert truth[py, px] and not truth[ny, nx]
    assert sim[py, px] == sim[:VALID[0]].max() and sim[ny, nx] == sim[:VALID[0]].min()


# -- real features -----------------------------------------------------------------------------------------------
def test_real_litemedsam_features_point_into_the_lung(litemedsam):
    sample = roiprompt.load_dataset("jsrt", root=data_root("jsrt").parent)[0]
    with torch.inference_mode():
        feats = litemedsam.encode_image(litemedsam.preprocess(sample.image)).features  # (1, 256, 64, 64)
    frame = Frame(sample.hw, litemedsam.input_size)
    masks = {k: frame.mask_to_model(v)[0, 0].numpy() > 0.5 for k, v in sample.masks.items()}
    lungs = masks["left_lung"] | masks["right_lung"]
    sim = similarity_map(mask_prototype(feats, masks["left_lung"]), feats)
    assert sim[lungs].mean() > sim[~lungs].mean() + 0.2
    (px, py), (nx, ny) = persam_points(sim, frame.valid_region(S))[0].astype(int)
    assert lungs[py, px] and not lungs[ny, nx]
    points, labels = select_points(sim, masks["left_lung"], frame.valid_region(S))
    x, y = points[:, 0].astype(int), points[:, 1].astype(int)
    assert labels.sum() == 4 and masks["left_lung"][y[labels == 1], x[labels == 1]].all()
    assert not masks["left_lung"][y[labels == 0], x[labels == 0]].any()
