"""TinyViT image encoder of LiteMedSAM (MobileSAM's variant: 256x256 input, 256x64x64 embedding).

Stage 0 is convolutional (inverted-residual "MBConv" blocks) and runs at the full input resolution, because the
patch embedding is two 1x1 convolutions (stride 1). Stages 1-3 are windowed self-attention blocks with a learned
relative-position bias, each followed by a depthwise 3x3 "local" convolution and an MLP. Patch merging between
stages halves the grid, except before the last stage (stride 1), so the grid ends at ``input / 4``. A neck maps the
last stage to the prompt decoder's width.

Tensors are kept as (B, C, H, W) between stages and as (B, L, C) tokens (L = H * W, row-major) inside attention
stages; viewed as a (B, H, W, C) grid and permuted, tokens are a channels-last (B, C, H, W) view, so with
``channels_last`` memory format the local convolutions and merges need no copies.

Parameter names follow the published checkpoint (``layers.{i}.blocks.{j}.attn.qkv``, ``neck.0`` ...), so
``lite_medsam.pth`` loads with ``strict=True``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) tensor; keeps the input's memory format."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)  # (B, 1, H, W), biased like nn.LayerNorm
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class ConvBN(nn.Sequential):
    """Bias-free convolution followed by BatchNorm (children ``c`` and ``bn``); padding keeps the size at stride 1."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_ch))


class PatchEmbed(nn.Module):
    """Two 1x1 ConvBN with a GELU between: (B, 3, S, S) -> (B, D, S, S); no downsampling in LiteMedSAM."""

    def __init__(self, in_ch: int, dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(ConvBN(in_ch, dim // 2), nn.GELU(), ConvBN(dim // 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise 3x3, 1x1 project, residual add, then GELU."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, kernel=3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv1(x))  # (B, 4C, H, W)
        y = F.gelu(self.conv2(y))  # (B, 4C, H, W)
        return F.gelu(x + self.conv3(y))  # (B, C, H, W)


class PatchMerging(nn.Module):
    """1x1 ConvBN, depthwise 3x3 ConvBN with ``stride``, 1x1 ConvBN: (B, C, H, W) -> (B, C', H/s, W/s)."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, kernel=3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x))  # (B, C', H/s, W/s)
        # the last 1x1 ConvBN as a per-token linear map, returned as a channels-last (B, C', H', W') view of
        # (B, L, C') tokens: the attention stage that follows takes the tokens back for free (eager: a view;
        # OpenVINO: two inverse transposes cancel), and OpenVINO folds the permute in front of a matrix product
        # into its own layout change, which it cannot do behind a convolution
        b, c, h, w = x.shape
        tokens = _pointwise(self.conv3, x.permute(0, 2, 3, 1).reshape(b, h * w, c))  # (B, L, C')
        return tokens.view(b, h, w, -1).permute(0, 3, 1, 2)


def _pointwise(layer: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution, as :class:`ConvBN` or a plain (BatchNorm-folded) ``nn.Conv2d``, on (B, L, C) tokens."""
    conv = layer.c if isinstance(layer, ConvBN) else layer
    weight, bias = conv.weight.flatten(1), conv.bias  # (C', C), (C',) or None
    if isinstance(layer, ConvBN):
        bn = layer.bn
        if bn.training:  # batch statistics: BatchNorm itself, on the tokens as a batch of 1x1 images
            y = F.linear(tokens, weight, bias)
            return bn(y.reshape(-1, y.shape[-1], 1, 1)).view_as(y)
        # eval: BatchNorm folded into the weights (constants that a converted graph folds away)
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        weight, bias = weight * scale[:, None], shift if bias is None else shift + bias * scale
    return F.linear(tokens, weight, bias)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside one window of ``window`` x ``window`` tokens, pre-normed, with a learned
    bias per head for every (|dy|, |dx|) offset between two tokens of the window.

    The fused ``qkv`` projection is laid out per head as [q (d), k (d), v (d)], d = dim / heads (checkpoint layout).
    :meth:`split_qkv_` rewrites it for inference as three projections with the softmax scale folded into q.
    """

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise InputError(f"TinyViT width {dim} is not divisible by its {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv: nn.Linear | None = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        # offset (|dy|, |dx|) between tokens i and j of the window -> column |dy| * window + |dx| of the table
        yy, xx = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        y, x = yy.flatten(), xx.flatten()  # (N,), N = window^2
        index = (y[:, None] - y[None, :]).abs() * window + (x[:, None] - x[None, :]).abs()  # (N, N)
        self.register_buffer("attention_bias_idxs", index, persistent=False)

    @torch.no_grad()
    def split_qkv_(self) -> "WindowAttention":
        """Rewrite in place for inference: ``qkv`` becomes ``q`` (pre-multiplied by the softmax scale), ``k`` and
        ``v`` projections. Same function up to float rounding (~3e-6 on the embedding); the state dict no longer
        matches the checkpoint, so call it on a private copy. An OpenVINO graph then has no Split node (a reference
        kernel) and no scale multiply: 3-5 % of the bfloat16 encoder here."""
        if self.qkv is None:
            return self
        h, d = self.num_heads, self.head_dim
        weight = self.qkv.weight.view(h, 3, d, -1)  # (h, 3, d, C): the per-head [q, k, v] layout
        bias = self.qkv.bias.view(h, 3, d)
        for i, name in enumerate(("q", "k", "v")):
            scale = self.scale if name == "q" else 1.0
            linear = nn.Linear(weight.shape[-1], h * d)
            linear.weight.copy_(weight[:, i].reshape(h * d, -1) * scale)
            linear.bias.copy_(bias[:, i].reshape(h * d) * scale)
            linear.requires_grad_(False)
            setattr(self, name, linear)
        self.qkv = None
        self.scale = 1.0
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape  # (B*, N, C): B* = batch x windows
        h, d = self.num_heads, self.head_dim
        x = self.norm(x)
        if self.qkv is not None:  # checkpoint form
            q, k, v = self.qkv(x).view(b, n, h, 3 * d).transpose(1, 2).split(d, dim=-1)  # each (B*, h, N, d)
        else:  # split_qkv_ form
            q, k, v = (proj(x).view(b, n, h, d).transpose(1, 2) for proj in (self.q, self.k, self.v))
        bias = self.attention_biases[:, self.attention_bias_idxs]  # (h, N, N)
        # explicit softmax attention: SDPA's CPU path with a float mask spends ~8% of the encoder on mask checks
        attn = q @ k.transpose(-2, -1)  # (B*, h, N, N)
        if self.scale != 1.0:
            attn.mul_(self.scale)
        out = attn.add_(bias).softmax(dim=-1) @ v  # (B*, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))  # (B*, N, C)


class TinyViTBlock(nn.Module):
    """Window attention (residual), depthwise 3x3 local ConvBN, MLP (residual); on (B, L, C) tokens of an H x W
    grid (L = H * W, row-major).

    The grid is zero-padded to a multiple of the window before attention and cropped after; the pad tokens take
    part in attention (as in the published model), so they are padded before the attention's LayerNorm.
    """

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.local_conv = ConvBN(dim, dim, kernel=3, groups=dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _windowed_attention(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        ws = self.window
        pad_h, pad_w = -h % ws, -w % ws
        grid = x.view(b, h, w, c)
        if pad_h or pad_w:
            grid = F.pad(grid, (0, 0, 0, pad_w, 0, pad_h))  # (B, H', W', C)
        nh, nw = (h + pad_h) // ws, (w + pad_w) // ws
        windows = grid.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)  # (B*, ws^2, C)
        out = self.attn(windows)  # (B*, ws^2, C)
        out = out.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, nh * ws, nw * ws, c)  # (B, H', W', C)
        return out[:, :h, :w]  # (B, H, W, C), a view when padded

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = (x.view(b, h, w, c) + self._windowed_attention(x, h, w)).view(b, h * w, c)  # (B, L, C)
        # (B, L, C) viewed as (B, H, W, C) and permuted is a channels-last (B, C, H, W): no copy in eager, and
        # OpenVINO cancels the permute against its own NHWC reorder around the convolution (a 4-D permute right
        # next to the convolution: a flattened (B, L, C) transpose is not recognised and costs two copies)
        x = self.local_conv(x.view(b, h, w, c).permute(0, 3, 1, 2))  # (B, C, H, W)
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, L, C)
        return x + self.mlp(x)


class Mlp(nn.Module):
    """Pre-normed two-layer GELU MLP on the last axis."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class ConvStage(nn.Module):
    """Stage 0: MBConv blocks, then patch merging; (B, C, H, W) -> (B, C', H/s, W/s)."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, out_dim: int, stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)  # (B, C, H, W)
        return self.downsample(x)


class AttentionStage(nn.Module):
    """Stages 1-3: TinyViT blocks, then (except the last stage) patch merging; (B, C, H, W) in and out."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float,
                 out_dim: int | None, stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TinyViTBlock(dim, num_heads, window, mlp_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, L, C): a free view when x is channels-last
        for block in self.blocks:
            x = block(x, h, w)
        x = x.view(b, h, w, c).permute(0, 3, 1, 2)  # (B, C, H, W), channels-last strides
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """TinyViT encoder: (B, 3, S, S) in [0, 1] -> (B, out_dim, S/4, S/4) (LiteMedSAM: (B, 256, 64, 64)).

    Args:
        img_size: side S of the square input.
        embed_dims: width of each stage (LiteMedSAM: 64, 128, 160, 320).
        depths: blocks per stage (2, 2, 6, 2).
        num_heads: attention heads per stage; entry 0 is unused (stage 0 is convolutional).
        window_sizes: attention window per stage; entry 0 is unused.
        merge_strides: stride of the patch merging after stages 0..n-2 (2, 2, 1: the grid ends at S/4).
        out_dim: width of the neck output (the prompt decoder's width, 256).
        mlp_ratio: MLP hidden width / stage width.
        mbconv_expand_ratio: hidden width / width in stage 0's MBConv blocks.

    Raises:
        InputError: inconsistent architecture numbers.
    """

    def __init__(self, img_size: int = 256, embed_dims: Sequence[int] = (64, 128, 160, 320),
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (2, 4, 5, 10),
                 window_sizes: Sequence[int] = (7, 7, 14, 7), merge_strides: Sequence[int] = (2, 2, 1),
                 out_dim: int = 256, mlp_ratio: float = 4.0, mbconv_expand_ratio: float = 4.0) -> None:
        super().__init__()
        n = len(embed_dims)
        if n < 2 or not len(depths) == len(num_heads) == len(window_sizes) == n or len(merge_strides) != n - 1:
            raise InputError(f"TinyViT needs >= 2 stages and matching lengths: embed_dims {len(embed_dims)}, "
                             f"depths {len(depths)}, num_heads {len(num_heads)}, window_sizes {len(window_sizes)}, "
                             f"merge_strides {len(merge_strides)} (expected n - 1)")
        total_stride = 1
        for s in merge_strides:
            total_stride *= s
        if img_size % total_stride:
            raise InputError(f"img_size {img_size} is not divisible by the total merge stride {total_stride}")
        self.img_size = img_size
        self.grid = img_size // total_stride  # side of the output grid (64)
        self.patch_embed = PatchEmbed(3, embed_dims[0])
        stages: list[nn.Module] = [ConvStage(embed_dims[0], depths[0], mbconv_expand_ratio, embed_dims[1],
                                             merge_strides[0])]
        for i in range(1, n):
            last = i == n - 1
            stages.append(AttentionStage(embed_dims[i], depths[i], num_heads[i], window_sizes[i], mlp_ratio,
                                         None if last else embed_dims[i + 1], 1 if last else merge_strides[i]))
        self.layers = nn.ModuleList(stages)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_dim, kernel_size=1, bias=False),
            LayerNorm2d(out_dim),
            nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_dim),
        )

    def stem(self, pixels: torch.Tensor) -> torch.Tensor:
        """The patch embedding, the only layer that reads the pixels: (B, 3, S, S) -> (B, 64, S, S).

        The part that :class:`~roiprompt.runtime.EncoderRunner` keeps in float32 when the rest runs in
        bfloat16 (0.4 % of the FLOPs): rounding the input and its first features to 8 significant bits moved the
        masks most. On the 64 images of benchmarks/speed.py (OpenVINO bf16, benchmarks/bf16_split.py), box-prompted
        mask Dice vs float32 rose from 0.9888 to 0.9926 on average (8 % more time); a float32 part up to the end of
        stage 0 gave 0.9957 for 14 % more time than bf16 everywhere.
        """
        return self.patch_embed(pixels)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """Everything after :meth:`stem`: (B, 64, S, S) -> (B, out_dim, S/4, S/4)."""
        for stage in self.layers:
            x = stage(x)  # -> (B, 128, 128, 128) -> (B, 160, 64, 64) -> (B, 320, 64, 64) -> (B, 320, 64, 64)
        return self.neck(x)  # (B, 256, 64, 64)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(pixels))  # (B, 256, 64, 64)
