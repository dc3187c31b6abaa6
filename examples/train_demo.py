"""Train the bundled demo model from scratch on this machine, with prediff's own commands.

    python examples/train_demo.py [--work runs/demo] [--out prediff_cli/assets/demo] [--events 192] [--resume]

Steps (each one a `prediff` command, so the run is what a user would type, with its progress bar):
1. `prediff download synthetic` writes a synthetic SEVIR-LR tree (advected, growing and decaying storms);
2. `prediff train-vae`, `prediff train-diffusion`, `prediff train-align` at the `demo` preset (the UNet and the
   alignment network are trained on the VAE's best checkpoint);
3. `prediff export-model` writes the best checkpoint of each (by validation loss), without optimizer state, to --out
   as vae.ckpt, unet.ckpt, align.ckpt: the files `prediff sample` uses when no model is given.

The run can span sessions: stop it at any time (Ctrl-C saves a checkpoint) and continue with `--resume`, which
passes `--resume` to every stage that has a checkpoint and skips the stages that have finished. Without
`--resume` a --work folder that already holds runs is refused, so nothing is trained over by accident.

Written to --work: demo_training.json (command, wall-clock seconds per stage summed over sessions, final and best
losses, and the training curves: training loss every log step, validation loss at every validation) and
demo_training.png (the curves).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = (("vae", "train-vae"), ("unet", "train-diffusion"), ("align", "train-align"))
SECTIONS = {"vae": "train_vae", "unet": "train_diffusion", "align": "train_align"}


def finished(name: str, run_dir: Path) -> bool:
    """Whether the run in `run_dir` has reached the step count of its own config (then it is not resumed)."""
    import yaml

    if not (run_dir / "metrics.jsonl").is_file() or not (run_dir / "config.yaml").is_file():
        return False
    target = yaml.safe_load((run_dir / "config.yaml").read_text())[SECTIONS[name]]["steps"]
    steps = [json.loads(line).get("step", 0) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return bool(steps) and max(steps) >= target


def prediff(*args: str) -> float:
    """Run one prediff command, streaming its output; returns its wall-clock seconds."""
    cmd = [sys.executable, "-m", "prediff", *args]
    print("$ prediff " + " ".join(args), flush=True)
    start = time.perf_counter()
    try:
        code = subprocess.run(cmd).returncode
    except KeyboardInterrupt:  # Ctrl-C reaches both processes; the command saves its checkpoint and stops
        code = 130
    if code != 0:
        raise SystemExit(f"stopped: `prediff {args[0]}` exited with status {code}; what it saved is kept, and "
                         "`--resume` continues from there")
    return time.perf_counter() - start


def curves(run_dir: Path) -> dict:
    """Training loss per logged step, validation loss per validation, and the final/best values of a run."""
    train, val = [], []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "val_loss" in record:
            val.append([record["step"], record["val_loss"]])
        elif "loss" in record:
            train.append([record["step"], record["loss"]])
    return {"step": train[-1][0] if train else None, "loss": train[-1][1] if train else None,
            "best_val_loss": min(v for _, v in val) if val else None, "curves": {"train": train, "val": val}}


def plot(stages: dict, path: Path) -> None:
    """One panel per network: training loss (thin) and validation loss (dots) against the optimizer step."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(stages), 3.2), dpi=100, layout="constrained")
    for ax, (name, stage) in zip(fig.subplots(1, len(stages), squeeze=False)[0], stages.items()):
        for key, style in (("train", dict(lw=0.8, label="training")), ("val", dict(marker="o", ls="--",
                                                                                 label="validation"))):
            points = stage["curves"][key]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], **style)
        values = [p[1] for key in ("train", "val") for p in stage["curves"][key]]
        if values and min(values) > 0:  # the UNet's loss with a learned log-variance can go below 0
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "demo", help="dataset and run folders")
    parser.add_argument("--out", type=Path, default=REPO / "prediff_cli" / "assets" / "demo",
                        help="where the exported vae/unet/align checkpoints go")
    parser.add_argument("--events", type=int, default=192, help="synthetic storm events to train on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the runs in --work (e.g. another session)")
    args = parser.parse_args()

    work, data = args.work, args.work / "data"
    started = [name for name, _ in STAGES if (work / name).exists()]
    if started and not args.resume:
        parser.exit(2, f"error: {work} already holds demo training runs ({', '.join(started)}); continue them "
                       "with --resume, or choose another --work\n")
    report_path = work / "demo_training.json"
    earlier = json.loads(report_path.read_text()) if args.resume and report_path.is_file() else {}
    seconds = dict(earlier.get("seconds", {}))
    if not (data / "CATALOG.csv").is_file():
        seconds["data"] = prediff("download", "synthetic", "--dest", str(data), "--events", str(args.events),
                                  "--seed", str(args.seed))
    common = ["--config", "demo", "--data", str(data), "--seed", str(args.seed)]
    vae_ckpt = work / "vae" / "best.ckpt"
    for name, command in STAGES:
        run_dir = work / name
        extra = [] if name == "vae" else ["--vae", str(vae_ckpt)]
        if finished(name, run_dir):
            print(f"{name}: {run_dir} has finished its steps; not trained again", flush=True)
            continue
        resume = ["--resume"] if (run_dir / "last.ckpt").is_file() else []
        seconds[name] = seconds.get(name, 0.0) + prediff(command, *common, "--run-dir", str(run_dir), *extra,
                                                         *resume)

    prediff("export-model", *(str(work / name) for name, _ in STAGES), "--out", str(args.out), "--overwrite")
    stages = {name: curves(work / name) for name, _ in STAGES}
    for name, _ in STAGES:
        stages[name]["exported_mb"] = round((args.out / f"{name}.ckpt").stat().st_size / 2 ** 20, 2)
    report = {"command": " ".join(sys.argv), "events": args.events, "seed": args.seed,
              "seconds": {k: round(v, 1) for k, v in seconds.items()}, "total_s": round(sum(seconds.values()), 1),
              "stages": stages}
    report_path.write_text(json.dumps(report, indent=1) + "\n")
    plot(stages, work / "demo_training.png")
    print(json.dumps({k: v for k, v in report.items() if k != "stages"}, indent=2))
    print(f"wrote {args.out} and {report_path}, {work / 'demo_training.png'}")


if __name__ == "__main__":
    main()
