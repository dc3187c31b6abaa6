"""How well a model's VAE reconstructs held-out frames: the ceiling of any forecast made through its latents.

    python -m benchmarks.vae_reconstruction --data DIR [--model demo|DIR] [--vae CKPT] [--split test] [--limit 24]

Every frame of the first --limit sequences of the split (13 frames each) is encoded, its posterior mean decoded
(the deterministic reconstruction) and scored against the frame with prediff's own categorical scores (CSI, POD,
SUCR, frequency bias per SEVIR threshold, a pixel counting at >= threshold; CSI-M = their mean) and the mean
absolute error in digital VIL. Prints JSON.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.measure import emit


def reconstruction_scores(data: Path, model: str = "demo", vae: str = None, split: str = "test",
                          limit: int = 24) -> dict:
    import numpy as np
    from mindspore import Tensor

    from prediff.config import load_config
    from prediff.data.sevir import open_dataset
    from prediff.pipelines.latents import jit_decoder, jit_encoder, split_moments
    from prediff.pipelines.model import load_model
    from prediff.verification.categorical import Contingency

    # only the VAE is used here: a --vae from another run than the model's UNet is not a mismatch to refuse
    loaded = load_model(model, vae=vae, allow_mismatch=vae is not None)
    encode, decode = jit_encoder(loaded.vae), jit_decoder(loaded.vae)
    sequences = open_dataset(load_config(loaded.config.preset, values={"data.root": str(data)}).data).split(split)
    table, errors = Contingency(), []
    start = time.perf_counter()
    count = min(limit, len(sequences))
    for i in range(count):
        frames = sequences[i][None]  # (1, T, H, W, 1) on 0-1
        mean, _ = split_moments(encode(Tensor(frames)))
        rec = np.clip(decode(mean).asnumpy(), 0.0, 1.0)
        table.accumulate(rec[..., 0], frames[..., 0])
        errors.append(float(np.abs(rec - frames).mean()) * 255.0)
    scores = table.compute()
    return {"model": loaded.name, "vae": str(loaded.paths.vae), "vae_sha256": loaded.sha256.get("vae"),
            "data": str(data), "split": split, "sequences": count, "frames": count * sequences[0].shape[0],
            "csi": scores["csi"], "pod": scores["pod"], "sucr": scores["sucr"], "bias": scores["bias"],
            "mae_digital": round(float(np.mean(errors)), 4), "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a SEVIR-LR tree (e.g. prediff download synthetic)")
    parser.add_argument("--model", default="demo", help="installed model name or folder (default: demo)")
    parser.add_argument("--vae", default=None, help="a VAE checkpoint instead of the model's")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--limit", type=int, default=24, help="sequences to reconstruct")
    args = parser.parse_args()
    emit(reconstruction_scores(args.data, args.model, args.vae, args.split, args.limit))


if __name__ == "__main__":
    main()
