"""Is int8 worth an option on this CPU? Post-training int8 quantization of the LiteMedSAM encoder (NNCF on the
OpenVINO float32 model roiprompt runs by default) against that float32 model: encoder ms/image, interleaved, and
the box-prompted masks' Dice and max |delta logits| vs float32 on real images not used for calibration.

NNCF is not one of roiprompt's dependencies (it pulls in ``openvino-telemetry``, which roiprompt leaves out), so
install it for this probe only: ``pip install nncf`` (then ``opt_in_out --opt_out`` declines the telemetry).
Run it alone.

    python -m benchmarks.int8_probe [--images 24] [--presets transformer,performance] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from roiprompt.evaluation.records import make_record, write_records
from roiprompt.evaluation.speed import dice_and_delta, load_images
from roiprompt.models.backbones import load_backbone
from roiprompt.models.backbones.base import ImageEmbedding

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=24, help="real images: odd ones calibrate, even ones are scored")
    p.add_argument("--presets", default="transformer,performance",
                   help="NNCF settings: transformer (ModelType.TRANSFORMER: SmoothQuant) and/or performance")
    p.add_argument("--repeats", type=int, default=3, help="timed passes over the scored images")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "int8_probe.json"))
    args = p.parse_args()
    try:
        import nncf
    except ImportError:
        p.exit(2, "int8_probe.py needs NNCF, which roiprompt does not install: pip install nncf\n")
    import openvino as ov

    command = "python -m benchmarks.int8_probe " + shlex.join(sys.argv[1:])
    torch.set_num_threads(args.threads)
    backbone = load_backbone("litemedsam", runtime="eager")  # its decoder turns embeddings into masks
    pixels, boxes, names = load_images(args.images)
    calibration, scored = pixels[1::2].numpy(), pixels[0::2].numpy()
    source = copy.deepcopy(backbone.model.image_encoder).eval().to(memory_format=torch.contiguous_format)
    with torch.no_grad():  # the conversion the default runtime makes (dynamic batch)
        fp32 = ov.convert_model(source, example_input=torch.zeros(1, 3, 256, 256),
                                input=[ov.PartialShape([-1, 3, 256, 256])])
    models, quantize_s = {"float32": fp32}, {}
    dataset = nncf.Dataset([c[None] for c in calibration])
    for preset in args.presets.split(","):
        start = time.perf_counter()
        kwargs = {"model_type": nncf.ModelType.TRANSFORMER} if preset == "transformer" else {}
        models[f"int8_{preset}"] = nncf.quantize(fp32.clone(), dataset, subset_size=len(calibration), **kwargs)
        quantize_s[f"int8_{preset}"] = time.perf_counter() - start
    core, config = ov.Core(), {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                               "INFERENCE_NUM_THREADS": args.threads}
    requests = {name: core.compile_model(m, "CPU", config).create_infer_request() for name, m in models.items()}

    def encode(name: str, image: np.ndarray) -> np.ndarray:
        return np.array(requests[name].infer([image[None]])[0], dtype=np.float32, copy=True)

    logits, embeddings = {}, {}
    for name in requests:
        feats = [torch.from_numpy(encode(name, image)) for image in scored]
        embeddings[name] = torch.cat(feats)
        logits[name] = torch.cat([backbone.decode(ImageEmbedding(f), boxes=b[None])[0][:, 0]
                                  for f, b in zip(feats, boxes[0::2])])
    with torch.no_grad():  # the float32 model must be the eager encoder, up to summation order
        eager = torch.cat([backbone.model.image_encoder(torch.from_numpy(image[None])) for image in scored])
    fp32_error = float((embeddings["float32"] - eager).abs().max())
    if fp32_error > 1e-3:
        raise RuntimeError(f"the float32 OpenVINO model differs from the eager encoder by {fp32_error:.2e}")
    times: dict[str, list[float]] = {name: [] for name in requests}
    for _ in range(args.repeats):  # interleaved per image: the machine's noise falls on every model alike
        for image in scored:
            for name in requests:
                start = time.perf_counter()
                encode(name, image)
                times[name].append(time.perf_counter() - start)

    base_ms = 1e3 * statistics.median(times["float32"])
    print(f"{len(scored)} scored images ({len(calibration)} calibrate), {args.threads} threads, "
          f"NNCF {nncf.__version__}; float32 model vs eager max |delta| {fp32_error:.1e}")
    print(f"{'model':24s}{'ms/image':>9s}{'x fp32':>8s}{'Dice min':>9s}{'Dice mean':>10s}{'max dlogit':>11s}"
          f"{'emb rel err':>12s}")
    records = []
    for name in requests:
        ms = 1e3 * statistics.median(times[name])
        dice, delta = dice_and_delta(logits[name], logits["float32"])
        rel = float((embeddings[name] - embeddings["float32"]).abs().mean() / embeddings["float32"].abs().mean())
        print(f"{name:24s}{ms:9.0f}{base_ms / ms:8.2f}{dice.min():9.4f}{dice.mean():10.4f}{delta.max():11.2e}"
              f"{rel:12.3f}")
        values = 1e3 * np.asarray(times[name])
        extra = {"speedup_vs_float32": round(base_ms / ms, 3), "dice_min": float(dice.min()),
                 "dice_mean": float(dice.mean()), "max_abs_delta_logits": float(delta.max()),
                 "embedding_relative_error": round(rel, 4), "quantize_seconds": round(quantize_s.get(name, 0.0), 1),
                 "calibration_images": len(calibration), "float32_vs_eager_max_delta": fp32_error,
                 "scored_images": names[0::2], "nncf": nncf.__version__, "openvino": ov.__version__.split("-")[0]}
        records.append(make_record(
            method="litemedsam_encoder", backbone="litemedsam", dataset="kvasir_seg+busbra+jsrt", structure=None,
            task="int8_probe", setting={"model": name, "threads": args.threads}, metric="ms_per_image",
            summary={"mean": ms, "ci95": [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))],
                     "n": len(values)},
            seconds_per_image=ms / 1e3, command=command, extra=extra))
    print(f"\nwrote {write_records(args.json, records)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
