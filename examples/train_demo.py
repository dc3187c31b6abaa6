"""Train the bundled demo model from scratch on this machine, with prediff's own commands.

    python examples/train_demo.py [--work runs/demo] [--out prediff_cli/assets/demo] [--events 96]

Steps (each one a `prediff` command, so the run is what a user would type):
1. `prediff download synthetic` writes a synthetic SEVIR-LR tree (advected, growing and decaying storms);
2. `prediff train-vae`, `prediff train-diffusion`, `prediff train-align` at the `demo` preset;
3. the best checkpoint of each (by validation loss) is stripped of optimizer state and written to --out as
   vae.ckpt, unet.ckpt, align.ckpt: the files `prediff sample` uses when no checkpoint is given.

Wall-clock time and final losses of each stage go to <work>/demo_training.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def prediff(*args: str) -> float:
    """Run one prediff command, streaming its output; returns its wall-clock seconds."""
    cmd = [sys.executable, "-m", "prediff", *args]
    print("$ prediff " + " ".join(args), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def last_metrics(run_dir: Path) -> dict:
    """The last training record and the best validation loss from a run's metrics.jsonl."""
    train, best_val = {}, None
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "val_loss" in record:
            best_val = record["val_loss"] if best_val is None else min(best_val, record["val_loss"])
        elif "loss" in record:
            train = record
    return {"step": train.get("step"), "loss": train.get("loss"), "best_val_loss": best_val}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "demo", help="dataset and run folders")
    parser.add_argument("--out", type=Path, default=REPO / "prediff_cli" / "assets" / "demo",
                        help="where the exported vae/unet/align checkpoints go")
    parser.add_argument("--events", type=int, default=96, help="synthetic storm events to train on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    work, data = args.work, args.work / "data"
    report = {"command": " ".join(sys.argv), "events": args.events, "stages": {}}
    if not (data / "CATALOG.csv").is_file():
        report["stages"]["data_s"] = prediff("download", "synthetic", "--dest", str(data), "--events",
                                             str(args.events), "--seed", str(args.seed))
    common = ["--config", "demo", "--data", str(data), "--seed", str(args.seed)]
    vae_ckpt = work / "vae" / "best.ckpt"
    stages = (("vae", "train-vae", []), ("unet", "train-diffusion", ["--vae", str(vae_ckpt)]),
              ("align", "train-align", ["--vae", str(vae_ckpt)]))
    for name, command, extra in stages:
        run_dir = work / name
        resume = ["--resume"] if (run_dir / "last.ckpt").is_file() else []
        seconds = prediff(command, *common, "--run-dir", str(run_dir), *extra, *resume)
        report["stages"][name] = {"seconds": round(seconds, 1), **last_metrics(run_dir)}

    prediff("export-model", *(str(work / name) for name in ("vae", "unet", "align")), "--out", str(args.out),
            "--overwrite")
    for name in ("vae", "unet", "align"):
        report["stages"][name]["exported_mb"] = round((args.out / f"{name}.ckpt").stat().st_size / 2**20, 2)
    report["total_s"] = round(sum(s["seconds"] if isinstance(s, dict) else s for s in report["stages"].values()), 1)
    (work / "demo_training.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
