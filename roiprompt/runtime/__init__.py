"""The runtime under the models: how a frozen image encoder runs on this machine.

- :mod:`.options`: :class:`InferenceOptions` (runtime, precision, threads, exact speed-ups) and machine probes;
- :mod:`.rewrites`: exact graph rewrites of a private copy (BatchNorm folding, split q/k/v) and code fingerprints;
- :mod:`.runner`: :class:`EncoderRunner`, which runs an encoder eager, through OpenVINO or ``torch.compile``;
- :mod:`.allocator`: glibc allocator settings for large tensors, and :func:`release_memory` between images.
"""

from .allocator import configure_cpu_allocator, release_memory
from .options import (PRECISIONS, RUNTIMES, InferenceOptions, cpu_has_native_bf16, inference_options,
                      openvino_available, runtime_cache_dir)
from .rewrites import code_fingerprint, fold_batchnorm, split_qkv
from .runner import EncoderRunner

__all__ = ["PRECISIONS", "RUNTIMES", "EncoderRunner", "InferenceOptions", "code_fingerprint", "configure_cpu_allocator",
           "cpu_has_native_bf16", "fold_batchnorm", "inference_options", "openvino_available", "release_memory",
           "runtime_cache_dir", "split_qkv"]
