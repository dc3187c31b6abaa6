"""Cost of the FVD: the I3D network per sequence, and what FVD adds to `prediff score --split test`.

    python -m benchmarks.fvd [--data DIR] [--limit 8] [--work /tmp/prediff-fvd-bench] [--skip-score]

1. Writes an official-format `pretrained_i3d_400.pt` with random weights (official keys and shapes, no PyTorch),
   serves it on 127.0.0.1 and installs it with `prediff download weights i3d` into a fresh `$PREDIFF_HOME`
   (the cost does not depend on the values of the weights).
2. I3D cost: features of 6-frame 128 × 128 sequences (the SEVIR-LR / demo size: 12 frames at 224 after the
   official preprocessing), first call (compile) and the median per sequence over further calls.
3. Unless --skip-score: `prediff score --split test --limit N` with the bundled demo model (its default sampler,
   8 members, both baselines) in its own process with the I3D installed; the time of the FVD step is measured
   inside that run (so both parts see the same load on a shared machine): wall, FVD part, their ratio, and both
   extrapolated to the whole split.
   Without --data a synthetic dataset (48 events, seed 0) is written under --work.
Prints JSON.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.measure import ROOT, emit, isolated

SEQUENCE = (6, 1, 128, 128)  # (T, C, H, W) of one forecast or observed sequence


def write_i3d_file(folder: Path) -> Path:
    """Random weights under the official I3D keys and shapes, as the official file name."""
    import numpy as np

    from prediff.io.state_dict_writer import write_state_dict
    from prediff.pipelines.published_weights import FEATURE_NETWORKS
    from prediff_models.i3d import InceptionI3d

    net = InceptionI3d(400, in_channels=3)
    rng = np.random.default_rng(0)
    state = {}
    for name, param in net.parameters_and_names():
        shape = tuple(param.shape)
        if name.endswith(("running_var", "bn.weight")):
            state[name] = np.ones(shape, np.float32)
        elif len(shape) > 1:  # He-scaled kernels keep the activations' scale through the ReLUs, so the random
            # network's features still depend on the video (its FVD values are then not degenerate)
            fan_in = int(np.prod(shape[1:]))
            state[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2 / fan_in))
        else:
            state[name] = np.zeros(shape, np.float32)
        if name.endswith("bn.running_var"):
            state[name[:-len("running_var")] + "num_batches_tracked"] = np.array(0, np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    return write_state_dict(folder / FEATURE_NETWORKS["i3d"].file.name, state)


def serve(folder: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def install(home: Path, url_base: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "prediff", "download", "weights", "i3d", "--url-base", url_base],
                   check=True, cwd=ROOT, env={**os.environ, "PREDIFF_HOME": str(home)}, capture_output=True)
    return round(time.perf_counter() - start, 1)


def i3d_cost(home: str, sequences: int = 8) -> dict:
    """Seconds per sequence of the feature extractor (chunked, compiled), after the first (compiling) call."""
    import numpy as np

    os.environ["PREDIFF_HOME"] = str(home)
    from prediff.pipelines.evaluate import fvd_features
    from prediff.verification.video_features import CHUNK

    start = time.perf_counter()
    extractor, _ = fvd_features()
    load = time.perf_counter() - start
    videos = np.random.default_rng(0).uniform(0, 1, (sequences,) + SEQUENCE).astype(np.float32)
    start = time.perf_counter()
    extractor.features(videos[:CHUNK])
    first = time.perf_counter() - start
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        extractor.features(videos)
        runs.append((time.perf_counter() - start) / sequences)
    return {"load_s": round(load, 2), "first_call_s": round(first, 2), "chunk": CHUNK,
            "s_per_sequence": round(min(runs), 3), "s_per_sequence_runs": [round(r, 3) for r in runs]}


def score_breakdown(home: str, data: str, limit: int, out: str) -> dict:
    """Runs in its own process: `prediff score --split test --limit N` (demo model, its own settings, both
    baselines) with the I3D installed; the time spent in the FVD step (I3D over truths, members and baseline
    forecasts, compile included) is measured inside the same run, so both parts see the same machine load."""
    os.environ["PREDIFF_HOME"] = home
    from prediff.pipelines import evaluate
    from prediff.pipelines.score_run import run_score

    spent = []
    original = evaluate.Evaluation._add_fvd

    def timed_add_fvd(self, truths, forecasts):
        start = time.perf_counter()
        original(self, truths, forecasts)
        spent.append(time.perf_counter() - start)

    evaluate.Evaluation._add_fvd = timed_add_fvd
    start = time.perf_counter()
    scores, _, _ = run_score(Path(out), split="test", limit=limit, sets=[f"data.root={data}"], overwrite=True)
    wall = time.perf_counter() - start
    fvd_s = sum(spent)
    blocks = {"PreDiff": scores, **scores["baselines"]}
    cases, members = scores["n_cases"], scores["n_members"]
    sequences = cases * (1 + members + len(scores["baselines"]))
    return {"cases": cases, "members": members, "wall_s": round(wall, 1), "fvd_s": round(fvd_s, 1),
            "fvd_first_batch_s": round(spent[0], 1) if spent else None,
            "wall_without_fvd_s": round(wall - fvd_s, 1), "ratio": round(wall / (wall - fvd_s), 3),
            "i3d_sequences": sequences, "fvd_s_per_sequence": round(fvd_s / sequences, 3),
            "fvd": {k: b.get("fvd") for k, b in blocks.items()},
            "csi_m": {k: b["csi"]["avg"] for k, b in blocks.items()},
            "crps": {k: b["crps"]["pool1"] for k, b in blocks.items()},
            "crps_standard": {k: b["crps_standard"]["pool1"] for k, b in blocks.items()},
            "notes": scores.get("notes", [])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--work", type=Path, default=Path("/tmp/prediff-fvd-bench"))
    parser.add_argument("--skip-score", action="store_true")
    args = parser.parse_args()
    work = args.work.resolve()
    home = work / "home"
    source = write_i3d_file(work / "served")
    server, url = serve(work / "served")
    try:
        result = {"i3d_file_mb": round(source.stat().st_size / 1e6, 1), "install_s": install(home, url)}
    finally:
        server.shutdown()
    result["i3d"] = isolated("benchmarks.fvd", "i3d_cost", home=str(home))
    if not args.skip_score:
        data = args.data
        if data is None:
            data = work / "synthetic"
            if not data.exists():
                subprocess.run([sys.executable, "-m", "prediff", "download", "synthetic", "--dest", str(data)],
                               check=True, cwd=ROOT, capture_output=True)
        result["score"] = isolated("benchmarks.fvd", "score_breakdown", home=str(home), data=str(data),
                                   limit=args.limit, out=str(work / "scores"))
        if "error" not in result["score"]:
            import dataclasses

            from prediff.data import open_dataset
            from prediff.pipelines.model import load_model

            n_test = len(open_dataset(dataclasses.replace(load_model("demo").config.data, root=str(data)))
                         .split("test"))
            part = result["score"]
            scale = n_test / part["cases"]  # the FVD's compile is scaled too: an overestimate of its share
            result["full_split"] = {"cases": n_test,
                                    "estimated_without_fvd_s": round(part["wall_without_fvd_s"] * scale),
                                    "estimated_fvd_s": round(part["fvd_s"] * scale)}
    emit(result)


if __name__ == "__main__":
    main()
