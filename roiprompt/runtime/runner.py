"""CPU inference engine for frozen image encoders: one switch per speed-up, the fastest correct path by default.

Every method pays for the image encoder (LiteMedSAM's TinyViT: ~75 GFLOP per 256x256 image), so
:class:`EncoderRunner` runs it, for every SAM-family backbone (LiteMedSAM, SAM, MedSAM, SAM 2), through one of
these *runtimes*:

* ``"eager"``: PyTorch eager, with the exact speed-ups below;
* ``"openvino"``: the module converted once to an OpenVINO model (IR cached on disk by checkpoint hash and
  :func:`code_fingerprint`), then run
  by OpenVINO's CPU plugin, which fuses convolutions with their BatchNorm / GELU / residual and blocks the
  memory-bound stage 0 for the cache. Same float32 arithmetic up to summation order (max |delta| ~2e-6 on the
  embedding);
* ``"compile"``: ``torch.compile`` (inductor, with weight freezing). Similar speed to OpenVINO on this CPU but
  20-60 s of compilation per process and input shape, so it is never the default;
* ``"auto"`` (default): ``$ROIPROMPT_RUNTIME`` when set, else the encoder's preference (SAM-family ViTs: eager,
  see :data:`roiprompt.models.backbones.sam.VIT_RUNTIME`), else ``"openvino"`` when the package imports, else
  ``"eager"``.

Exact eager switches (results equal up to float rounding, all on by default):

* ``tune_allocator``: glibc ``mallopt`` (:func:`roiprompt.runtime.allocator.configure_cpu_allocator`);
* ``channels_last``: NHWC memory format, where oneDNN's depthwise convolutions are ~3.5x faster;
* ``fold_bn``: each Conv2d + BatchNorm2d pair folded into one convolution with a bias (a private copy: the
  backbone's own module, its ``state_dict`` and fine-tuning are untouched), which removes a memory-bound pass over
  every activation (17 % of the eager encoder's time);
* ``inference_mode``: no autograd bookkeeping;
* ``split_qkv``: attention modules that define ``split_qkv_()`` (LiteMedSAM's TinyViT window attention) are
  rewritten in the private copy as separate q, k, v projections with the softmax scale folded into q (max |delta|
  ~4e-6 on the embedding). It applies to the OpenVINO model too, where it removes a Split node (a reference kernel)
  and a multiply per block.

Reduced precision is never implicit: ``precision="bfloat16"`` runs the encoder in bfloat16 (eager autocast, or
OpenVINO's bf16 inference hint when the CPU reports native BF16) and returns float32. It changes the masks
slightly (benchmarks/speed.py reports the Dice against float32) and is only faster on CPUs with AVX512-BF16/AMX.
An encoder that splits into ``stem(pixels)`` and ``body(features)`` (``forward = body o stem``; LiteMedSAM's
TinyViT does: its patch embedding, 0.4 % of the FLOPs) keeps its stem in float32 under bfloat16
(``float32_stem``, on by default): the layer that reads the pixels is where 8-bit mantissas move the masks most.
With OpenVINO the stem and the body are then two models, compiled in float32 and bf16, the body reading the
stem's output in place.

``static_batch`` (OpenVINO, on by default): the converted model keeps a dynamic batch, but it is compiled once
per batch size it meets, with static shapes (a second or two each). Only on static shapes does OpenVINO's CPU
plugin cancel a permute against the layout change it inserts around a convolution, so TinyViT's depthwise "local"
convolutions stop costing two tensor copies each (benchmarks/speed.py: the dynamic-batch model is 8 % slower in
float32 and 15 % in bfloat16).

``threads`` sets the intra-op threads of both PyTorch (process-wide) and OpenVINO.

Example:
    >>> runner = EncoderRunner(encoder, InferenceOptions(runtime="eager"), input_size=256, key="sha...")
    >>> features = runner(pixels)  # (B, C, h, w) float32, no autograd graph
"""


from __future__ import annotations

import contextlib
import copy
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..files import atomic_path
from .allocator import configure_cpu_allocator
from .options import InferenceOptions, cpu_has_native_bf16, runtime_cache_dir
from .rewrites import _Float32Stem, _Method, code_fingerprint, fold_batchnorm, split_qkv

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _ovc_telemetry_declined():
    """OpenVINO's converter sends usage telemetry when ``openvino-telemetry`` is installed and no consent file
    exists; it declines in CI jobs. roiprompt must never send anything off the machine (roiprompt's lock leaves that
    package out), so the conversion runs as a CI job would."""
    saved = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = saved



class EncoderRunner:
    """Runs one frozen image encoder ``(B, 3, S, S) -> tensor or tuple of tensors`` on the runtime that ``options``
    asks for (a tuple for multi-scale encoders such as SAM 2's).

    The encoder module itself is never modified: optimised copies are built lazily on the first call (an
    OpenVINO conversion takes ~15-40 s once per machine and checkpoint, then it is read from
    :func:`runtime_cache_dir`). A module moved to an accelerator runs as it is (these are CPU paths). A cached
    conversion that cannot be read is deleted and converted again (logged once). When the runtime was chosen
    automatically and the OpenVINO conversion fails (an architecture it cannot trace), the runner warns and runs
    eager; an explicit ``runtime="openvino"`` raises instead.

    Args:
        module: the encoder (eval mode, frozen).
        options: :class:`InferenceOptions`.
        input_size: S, the square input side (fixes the converted model's spatial shape; the batch stays dynamic in
            the converted model, and ``static_batch`` fixes it per compiled model).
        key: identifies the weights (checkpoint SHA-256 plus architecture name) for the on-disk OpenVINO cache;
            None (weights of unknown origin) converts in memory and caches nothing.
        prefer: what ``runtime="auto"`` means for this encoder when ``$ROIPROMPT_RUNTIME`` is unset (default:
            OpenVINO when installed, else eager).
    """

    def __init__(self, module: nn.Module, options: InferenceOptions, *, input_size: int, key: str | None,
                 prefer: str | None = None) -> None:
        self.module = module
        self._chosen_automatically = options.runtime == "auto"
        self.options = options.resolved(prefer)
        self.input_size = input_size
        self.key = key
        self.code = code_fingerprint(module)  # part of the OpenVINO cache key
        # OpenVINO, filled on use: batch size (None: dynamic) -> [(compiled model, infer request)] per part
        self.compiled_batches: dict[int | None, list] = {}
        self._impl = None
        if self.options.tune_allocator:
            configure_cpu_allocator()
        if self.options.threads is not None:
            torch.set_num_threads(self.options.threads)
        if self.options.precision == "bfloat16" and not cpu_has_native_bf16():
            logger.warning("this CPU has no native bfloat16 (AVX512-BF16/AMX): bfloat16 will be emulated and slower "
                           "than float32")

    @property
    def runtime(self) -> str:
        """The runtime that runs ("eager", "openvino" or "compile"; never "auto")."""
        return self.options.runtime

    @property
    def mixed_precision(self) -> bool:
        """Whether the encoder's stem runs in float32 and the rest in bfloat16 (see :class:`InferenceOptions`)."""
        return (self.options.precision == "bfloat16" and self.options.float32_stem
                and callable(getattr(self.module, "stem", None)) and callable(getattr(self.module, "body", None)))

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        param = next(self.module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        if device.type != "cpu":
            with torch.inference_mode():
                out = self.module(pixels.to(device=device, dtype=torch.float32))
            return _detached(out)
        if self._impl is None:
            self._impl = self._build()
        return self._impl(pixels)

    def _build(self):
        builders = {"eager": self._build_eager, "openvino": self._build_openvino, "compile": self._build_compiled}
        try:
            return builders[self.runtime]()
        except Exception as error:  # noqa: BLE001 - any conversion failure: fall back only when we chose OpenVINO
            if self.runtime != "openvino" or not self._chosen_automatically:
                raise
            logger.warning("OpenVINO could not convert this encoder (%s: %s); running it eager instead",
                           type(error).__name__, error)
            self.options = replace(self.options, runtime="eager")
            return self._build_eager()

    # -- eager ----------------------------------------------------------------------------------------------------
    def _eager_module(self) -> nn.Module:
        """What the eager and compile runtimes run: a prepared private copy (or the module itself when no switch
        needs one), with its stem kept in float32 under mixed precision."""
        o = self.options
        module = self.module
        rewrites_qkv = o.split_qkv and any(callable(getattr(m, "split_qkv_", None)) for m in module.modules())
        if o.fold_bn or o.channels_last or rewrites_qkv:
            module = copy.deepcopy(module).eval()  # private copy: the backbone's own module stays as loaded
            if o.fold_bn:
                fold_batchnorm(module)
            if rewrites_qkv:
                split_qkv(module)
            if o.channels_last:
                module.to(memory_format=torch.channels_last)
        return _Float32Stem(module) if self.mixed_precision else module

    def _build_eager(self):
        return self._run_module(self._eager_module())

    def _run_module(self, module: nn.Module):
        """The eager (or compiled) call: input layout, autograd mode and precision as the options say."""
        o = self.options

        def run(pixels: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
            x = pixels.float()
            if o.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            grad = torch.inference_mode() if o.inference_mode else contextlib.nullcontext()
            cast = (torch.autocast("cpu", dtype=torch.bfloat16) if o.precision == "bfloat16"
                    else contextlib.nullcontext())
            with grad, cast:
                out = module(x)
            return _detached(out)

        return run

    # -- torch.compile ----------------------------------------------------------------------------------------------
    def _build_compiled(self):
        # freezing: the frozen weights become graph constants that inductor folds and prepacks for oneDNN (a few
        # per cent here, interleaved: bfloat16 446 vs 475 ms per image); the module is a private, frozen copy anyway
        return self._run_module(torch.compile(self._eager_module(), dynamic=False, options={"freezing": True}))

    # -- OpenVINO ---------------------------------------------------------------------------------------------------
    def _openvino_model_path(self, part: str = "") -> Path | None:
        import openvino as ov

        if self.key is None:
            return None
        version = ov.__version__.split("-")[0]
        rewrite = "-qkv" if self.options.split_qkv else ""
        return runtime_cache_dir() / f"{self.key}-s{self.input_size}-ov{version}-c{self.code}{rewrite}{part}.xml"

    def _openvino_model(self, core, module: nn.Module, example: torch.Tensor, part: str = ""):
        """``module`` as an OpenVINO model with a dynamic batch: read from the cache, else converted (and cached
        when the weights have a key).

        A cached model that fails to load (truncated, garbage, a .bin missing) is logged, deleted and converted
        again, once: if that conversion fails too, the error reaches :meth:`_build` like any failed conversion.
        """
        path = self._openvino_model_path(part)
        if path is not None and path.is_file():
            try:
                return core.read_model(path)
            except Exception as error:  # noqa: BLE001 - OpenVINO raises RuntimeError for every kind of bad file
                logger.warning("the cached OpenVINO model %s cannot be read (%s); deleting it and converting the "
                               "encoder again", path, _openvino_message(error))
                _remove_openvino_model(path)
        logger.info("converting the image encoder to OpenVINO (once per machine and checkpoint): %s", path)
        model = self._convert(module, example)
        if path is not None:
            try:
                _save_openvino_model(model, path)
            except OSError as error:  # a full or read-only disk costs a conversion next time, not this run
                logger.warning("could not cache the converted OpenVINO model at %s (%s); it will be converted again "
                               "next time", path, error)
        return model

    def _convert(self, module: nn.Module, example: torch.Tensor):
        """``module`` converted to an OpenVINO model whose batch dimension is dynamic."""
        import openvino as ov

        # convert from a plain NCHW float32 copy; OpenVINO folds BatchNorm and picks its own layouts
        source = copy.deepcopy(module).eval().to(memory_format=torch.contiguous_format)
        if self.options.split_qkv:
            split_qkv(source)
        with torch.no_grad(), _ovc_telemetry_declined():
            return ov.convert_model(source, example_input=example, input=[ov.PartialShape([-1, *example.shape[1:]])])

    def _build_openvino(self):
        import numpy as np
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if self.options.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.options.threads
        bf16 = self.options.precision == "bfloat16"
        if bf16 and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            # OpenVINO would silently stay in float32 here: emulate bf16 in eager so the option means what it says
            logger.warning("OpenVINO reports no BF16 on this CPU: bfloat16 falls back to eager autocast")
            self.options = replace(self.options, runtime="eager")
            return self._build_eager()
        s = self.input_size
        if self.mixed_precision:  # two models: OpenVINO's precision hint is per compiled model, not per layer
            parts = [("-stem", _Method(self.module, "stem"), "f32"), ("-body", _Method(self.module, "body"), "bf16")]
        else:
            parts = [("", self.module, "bf16" if bf16 else "f32")]
        models = []  # (dynamic-batch model, precision hint) per part
        example = torch.zeros(1, 3, s, s)
        for part, module, hint in parts:
            if models:  # the previous part's output, batch 1, is this part's example input
                shape = list(models[-1][0].outputs[0].get_partial_shape())[1:]
                example = torch.zeros(1, *(d.get_length() for d in shape))
            models.append((self._openvino_model(core, module, example, part), hint))

        def compile_parts(batch: int | None) -> list:
            stages = []
            for model, hint in models:
                if batch is not None:  # static shapes: see InferenceOptions.static_batch
                    model = model.clone()
                    rest = list(model.inputs[0].get_partial_shape())[1:]
                    model.reshape({0: ov.PartialShape([batch, *rest])})
                compiled = core.compile_model(model, "CPU", {**config, "INFERENCE_PRECISION_HINT": hint})
                stages.append((compiled, compiled.create_infer_request()))
            return stages

        def run(pixels: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
            batch = pixels.shape[0] if self.options.static_batch else None
            if batch not in self.compiled_batches:
                self.compiled_batches[batch] = compile_parts(batch)
            stages = self.compiled_batches[batch]
            x = np.ascontiguousarray(pixels.detach().float().cpu().numpy())
            stages[0][1].infer([x], share_inputs=True)
            for (_, previous), (_, request) in zip(stages, stages[1:]):
                request.set_input_tensor(previous.get_output_tensor(0))  # in place: no copy between the parts
                request.infer()
            compiled, request = stages[-1]
            outs = tuple(torch.from_numpy(np.array(request.get_tensor(o).data, dtype=np.float32, copy=True))
                         for o in compiled.outputs)
            return outs[0] if len(outs) == 1 else outs

        return run



def _save_openvino_model(model, path: Path) -> None:
    """Write ``model`` as ``path`` (.xml) and its .bin, each atomically (:func:`roiprompt.files.atomic_path`), the
    .bin first: a reader never sees an .xml without its .bin."""
    import openvino as ov

    with atomic_path(path) as xml:
        weights = xml.with_suffix(".bin")  # where save_model puts the weights of the temporary .xml
        try:
            ov.save_model(model, xml, compress_to_fp16=False)  # keep the float32 weights bit-exact
            with atomic_path(path.with_suffix(".bin")) as tmp:
                os.replace(weights, tmp)
        finally:
            weights.unlink(missing_ok=True)  # left behind only when saving failed


def _remove_openvino_model(path: Path) -> None:
    """Delete a cached model, the .xml first (as it is written last); files already gone are fine."""
    for file in (path, path.with_suffix(".bin")):
        try:
            file.unlink(missing_ok=True)
        except OSError as error:  # unwritable: the new conversion's save fails too and says so
            logger.warning("could not delete %s (%s)", file, error)


def _openvino_message(error: Exception) -> str:
    """OpenVINO's message without its "Exception from src/...cpp:N:" source-location lines."""
    lines = [line.strip() for line in str(error).splitlines()]
    return " ".join(line for line in lines if line and not line.startswith("Exception from ")) or repr(error)


def _detached(out: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Plain float32 contiguous tensor(s) outside inference mode, so callers may train heads on them."""
    if isinstance(out, torch.Tensor):
        return out.float().clone(memory_format=torch.contiguous_format)
    return tuple(t.float().clone(memory_format=torch.contiguous_format) for t in out)
