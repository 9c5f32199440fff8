"""Inference options: which runtime, precision and exact speed-ups an image encoder runs with.

The runtimes and switches are described in :mod:`roiprompt.runtime.runner`; this module only holds the settings,
their defaults and the probes of what this machine can do (OpenVINO installed, native bfloat16).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import InputError

RUNTIMES = ("auto", "eager", "openvino", "compile")
PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class InferenceOptions:
    """How to run a frozen image encoder on the CPU (see the module docstring for each switch).

    Attributes:
        runtime: "auto" | "eager" | "openvino" | "compile".
        precision: "float32" (default) or "bfloat16" (explicit opt-in; masks change slightly).
        threads: intra-op threads for PyTorch (process-wide) and OpenVINO; None keeps the current setting.
        channels_last, fold_bn, inference_mode, tune_allocator: the exact eager speed-ups.
        split_qkv: rewrite fused qkv attention projections (eager, compile and OpenVINO; see the module docstring).
        static_batch: OpenVINO only: compile the converted model once per batch size with static shapes (see the
            module docstring); off: one dynamic-batch compiled model for every batch size.
        float32_stem: under bfloat16, run the encoder's ``stem`` (where it defines one) in float32.
    """

    runtime: str = "auto"
    precision: str = "float32"
    threads: int | None = None
    channels_last: bool = True
    fold_bn: bool = True
    inference_mode: bool = True
    tune_allocator: bool = True
    split_qkv: bool = True
    static_batch: bool = True
    float32_stem: bool = True

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise InputError(f"unknown runtime {self.runtime!r}; choose one of {RUNTIMES}")
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}; choose one of {PRECISIONS}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be >= 1, got {self.threads}")

    @classmethod
    def reference(cls) -> "InferenceOptions":
        """The plain path, as the published implementation runs: eager float32 NCHW, autograd on, glibc defaults."""
        return cls(runtime="eager", channels_last=False, fold_bn=False, inference_mode=False, tune_allocator=False,
                   split_qkv=False)

    def resolved(self, prefer: str | None = None) -> "InferenceOptions":
        """``runtime="auto"`` replaced by the runtime that will actually run: ``$ROIPROMPT_RUNTIME`` when set, else
        ``prefer`` (an encoder's own default, e.g. "eager" for ViTs), else OpenVINO when installed, else eager."""
        if self.runtime != "auto":
            return self
        chosen = os.environ.get("ROIPROMPT_RUNTIME", "auto")
        if chosen not in RUNTIMES:
            raise InputError(f"$ROIPROMPT_RUNTIME is {chosen!r}; choose one of {RUNTIMES}")
        if chosen == "auto":
            chosen = prefer or ("openvino" if openvino_available() else "eager")
        return replace(self, runtime=chosen)


def inference_options(fast: bool = True, base: InferenceOptions | None = None, **overrides) -> InferenceOptions:
    """``base`` (default: ``InferenceOptions()`` when ``fast``, else ``InferenceOptions.reference()``) with the
    given switches set; None values are ignored, so builders can forward their keyword arguments as they are.

    Raises:
        InputError: an unknown option name or value.
    """
    fields = set(InferenceOptions.__dataclass_fields__)
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InputError(f"unknown inference option(s) {unknown}; the options are {sorted(fields)}")
    if base is None:
        base = InferenceOptions() if fast else InferenceOptions.reference()
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def openvino_available() -> bool:
    """Whether the ``openvino`` package imports (it is in roiprompt's lock; optional elsewhere)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bfloat16 instructions (AVX512-BF16 or AMX), the condition for bf16 to be faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def runtime_cache_dir() -> Path:
    """``$ROIPROMPT_RUNTIME_CACHE`` or ``~/.cache/roiprompt/runtime``: converted OpenVINO models."""
    return Path(os.environ.get("ROIPROMPT_RUNTIME_CACHE", Path.home() / ".cache" / "roiprompt" / "runtime"))

