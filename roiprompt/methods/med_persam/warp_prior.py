"""The warped reference as a prior: one warping model per reference, fit at ``set_reference``, and the
best-aligned reference's masks warped onto each target. Shared by ``med_persam``, ``registration`` and
``med_persam_plus`` (methods.md §1.1-1.2; the model and losses are in :mod:`.warping`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...prompts.transforms import resize_rows
from ..config import ConfigError, MethodConfig, check_int, check_number
from ..oneshot import OneShotMethod, Target
from ..references import Reference
from .warping import FlowUNet, fit_warping, lncc_loss, predict_flow, refine_flow, upsample_flow, warp


@dataclass(frozen=True)
class WarpingConfig(MethodConfig):
    """Settings of the warping model (shared by ``med_persam`` and ``registration``).

    Attributes:
        warp_size: side of the square grey images the flow U-Net sees (images are resized, not padded).
        warp_iterations: Adam steps of the first fit (methods.md §1.2).
        warp_batch: pairs per step (half real pool pairs, half synthetic when a pool is given).
        warp_lr: Adam learning rate.
        smoothness_weight: lambda_s of the flow smoothness term.
        max_pool: at most this many pool images are kept as real pairs (seeded subsample).
        instance_iterations: Adam steps refining each target's flow on that pair (:func:`refine_flow`; 0: off).
        instance_grid: side of the control lattice of that refinement.
        instance_lr: its learning rate, in pixels of ``warp_size``.
        seed: seeds the flow initialisation and pair sampling.
    """

    warp_size: int = 128
    warp_iterations: int = 300
    warp_batch: int = 4
    warp_lr: float = 1e-3
    smoothness_weight: float = 1.0
    max_pool: int = 64
    instance_iterations: int = 100
    instance_grid: int = 16
    instance_lr: float = 4.0
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        check_int("warp_size", self.warp_size, 16)
        if self.warp_size % 16:  # the flow U-Net halves the image four times
            raise ConfigError("warp_size", self.warp_size, "a multiple of 16 (the flow U-Net's input must be "
                              "divisible by 16)")
        check_int("warp_iterations", self.warp_iterations, 0)
        check_int("warp_batch", self.warp_batch, 1)
        check_number("warp_lr", self.warp_lr, 0.0, low_open=True)
        check_number("smoothness_weight", self.smoothness_weight, 0.0)
        check_int("max_pool", self.max_pool, 0)
        check_int("instance_iterations", self.instance_iterations, 0)
        check_int("instance_grid", self.instance_grid, 2)
        check_number("instance_lr", self.instance_lr, 0.0, low_open=True)
        check_int("seed", self.seed, 0)


def grey_square(image: np.ndarray, size: int) -> torch.Tensor:
    """HxW or HxWx3 uint8 -> (size, size) float32 grey in [0, 1] (channel mean, antialiased resize).

    Computed a row block at a time (:func:`~roiprompt.prompts.transforms.resize_rows`): the same numbers as the
    whole-image float32 pass, without its full-resolution float copies."""
    image = np.asarray(image)

    def rows(r0: int, r1: int) -> torch.Tensor:
        block = torch.as_tensor(np.asarray(image[r0:r1], dtype=np.float32) / 255.0)
        return block.mean(dim=-1) if block.ndim == 3 else block

    return resize_rows(rows, image.shape[:2], (size, size), block_pixels=1 << 20)


def square_masks(masks: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """HxW masks -> (K, size, size) soft masks (area-preserving bilinear resize, same squash as the images).

    One mask and one row block at a time (the resize works per channel): no full-resolution float stack."""
    return torch.stack([resize_rows(lambda r0, r1, m=np.asarray(m): np.asarray(m[r0:r1], dtype=np.float32),
                                    np.shape(m), (size, size)) for m in masks])


@dataclass
class WarpState:
    """One reference prepared for warping: its grey square, masks at the fit's and the work frame's size, and
    the warping model fit on it."""

    grey: torch.Tensor  # (w, w)
    masks_small: torch.Tensor  # (K, w, w): the fit's Dice terms
    masks_work: torch.Tensor  # (K, S, S): warped for prompting
    fraction: np.ndarray  # (K,) mask area / image area
    model: torch.nn.Module
    seconds: float


class _Warping(OneShotMethod):
    """Fits one warping model per reference and warps the best-matching reference's masks onto each target."""

    def _on_reference(self) -> None:
        self._pool = self._pool_squares()
        fitted = getattr(self, "_warps", {})
        # add_reference refits nothing already fit: states are keyed by the reference's uid
        self._warps = {r.uid: fitted.get(r.uid) or self._fit_warp(r) for r in self.references}
        self.fit_seconds = sum(w.seconds for w in self._warps.values())

    def _pool_squares(self) -> list[torch.Tensor]:
        """Grey squares of the pool images the warping fits learn from (a seeded subsample of ``max_pool``)."""
        cfg, pool = self.config, self.pool
        if len(pool) > cfg.max_pool:  # a seeded subsample keeps the fit's memory bounded
            keep = np.random.default_rng(cfg.seed).choice(len(pool), cfg.max_pool, replace=False)
            pool = [pool[i] for i in sorted(keep)]
        return [grey_square(p, cfg.warp_size) for p in pool]

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        meta, tensors = super()._fitted_state()
        states = self.warp_states if hasattr(self, "_warps") else []  # med_persam_plus(localisers="head"): none
        for i, state in enumerate(states):
            tensors.update({f"warp.{i}.grey": state.grey, f"warp.{i}.masks_small": state.masks_small,
                            f"warp.{i}.masks_work": state.masks_work, f"warp.{i}.fraction": state.fraction})
            tensors.update({f"warp.{i}.model.{k}": v for k, v in state.model.state_dict().items()})
        meta.update(warp_seconds=[s.seconds for s in states], fit_seconds=self.fit_seconds)
        return meta, tensors

    def _restore_fitted_state(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        super()._restore_fitted_state(meta, tensors)
        self._pool = self._pool_squares()
        if meta["warp_seconds"]:
            self._warps = {}
            for i, (ref, seconds) in enumerate(zip(self.references, meta["warp_seconds"], strict=True)):
                prefix = f"warp.{i}.model."
                model = FlowUNet(generator=torch.Generator())  # its own generator: the global RNG is untouched
                model.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
                self._warps[ref.uid] = WarpState(tensors[f"warp.{i}.grey"], tensors[f"warp.{i}.masks_small"],
                                                 tensors[f"warp.{i}.masks_work"], tensors[f"warp.{i}.fraction"].numpy(),
                                                 model.eval(), seconds)
        self.fit_seconds = meta["fit_seconds"]

    def _fit_warp(self, ref: Reference) -> WarpState:
        cfg = self.config
        grey = grey_square(ref.image, cfg.warp_size)
        masks = list(ref.masks.values())
        small = square_masks(masks, cfg.warp_size)
        start = time.perf_counter()
        model = fit_warping(grey, small, targets=self._pool, iterations=cfg.warp_iterations, batch=cfg.warp_batch,
                            lr=cfg.warp_lr, seed=cfg.seed, smoothness_weight=cfg.smoothness_weight)
        return WarpState(grey, small, square_masks(masks, self.work_size), np.array([m.mean() for m in masks]),
                         model, time.perf_counter() - start)

    @property
    def warp_states(self) -> list[WarpState]:
        """One :class:`WarpState` per reference, in reference order."""
        return [self._warps[r.uid] for r in self.references]

    def _prepare_target(self, target: Target) -> None:
        cfg = self.config
        grey = grey_square(target.image, cfg.warp_size)
        states = self.warp_states
        flows = [predict_flow(s.model, s.grey, grey) for s in states]
        if len(states) > 1:  # k references: warp from the one the network aligns best (local NCC, image space)
            with torch.no_grad():
                fits = [float(lncc_loss(warp(s.grey[None, None], f), grey[None, None])) for s, f in zip(states, flows)]
            best = int(np.argmin(fits))
        else:
            best = 0
        state = states[best]
        flow = refine_flow(state.grey, grey, flows[best], cfg.instance_iterations, cfg.instance_grid,
                           cfg.instance_lr, cfg.smoothness_weight)
        with torch.no_grad():
            match = -float(lncc_loss(warp(state.grey[None, None], flow), grey[None, None]))
            flow = upsample_flow(flow, self.work_size)
            warped = warp(state.masks_work[None], flow)[0].clamp(0, 1)  # (K, S, S) in squashed target coords
        target.state.update(grey=grey, warped=warped, warp_reference=best, warp_match=match)

    def warped_work(self, target: Target, structure: str) -> np.ndarray:
        """The warped reference mask of ``structure`` as an (S, S) soft mask in the work frame."""
        soft = target.state["warped"][self.structures.index(structure)][None, None]  # (1, 1, S, S)
        h, w = target.frame.valid_region(self.work_size)
        return F.pad(F.interpolate(soft, size=(h, w), mode="bilinear", align_corners=False),
                     (0, self.work_size - w, 0, self.work_size - h))[0, 0].numpy()

    def warped_mask(self, target: Target, structure: str) -> tuple[np.ndarray, np.ndarray]:
        """The warped reference mask of ``structure``: (S, S) soft in the work frame and HxW bool original."""
        soft = target.state["warped"][self.structures.index(structure)][None, None]
        orig = F.interpolate(soft, size=target.frame.orig_hw, mode="bilinear", align_corners=False)[0, 0]
        return self.warped_work(target, structure), orig.numpy() > 0.5
