"""Download + conversion of the published weights at the paper size: wall time and peak memory.

    python -m benchmarks.published_weights [--preset sevirlr] [--work /tmp/prediff-weights-bench] [--sample]

1. Builds the `preset` networks with random weights and writes their state dicts in the official key layout as
   PyTorch files under the official names (`prediff.io.state_dict_writer`; no PyTorch needed).
2. Serves them from a loopback HTTP server (127.0.0.1, started here, with Range support).
3. Runs `install_weights(..., url_base=...)` in its own process (so its peak RSS is its own) into a fresh
   `$PREDIFF_HOME`, and checks that the installed networks hold exactly the served weights.
4. With --sample, times `prediff sample --model sevirlr` (8 aligned members, the model's default sampler; fewer
   solver steps with --sample-steps) in its own process.
Prints JSON: sizes, seconds, peak RSS (MB), the CPU.
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


def write_official_files(preset: str, folder: Path) -> dict:
    """Random-weight networks of `preset` written as the official `.pt` files; returns name → bytes."""
    import prediff_models as models
    from prediff.config import load_config
    from prediff.io.state_dict_writer import write_state_dict
    from prediff.pipelines.published_weights import RELEASES

    cfg, files, folder = load_config(preset), RELEASES["sevirlr"].files, Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for component, file in files.items():
        name = file.name
        net = models.build(component, cfg.model_kwargs(component))
        sizes[name] = write_state_dict(folder / name, models.official_state_dict(net)).stat().st_size
        del net
    return sizes


def install(home: str, url_base: str) -> dict:
    """Runs in its own process: the whole download + conversion."""
    os.environ["PREDIFF_HOME"] = home
    from prediff.pipelines.published_weights import install_weights

    start = time.perf_counter()
    result = install_weights("sevirlr", url_base=url_base)
    return {"install_s": round(time.perf_counter() - start, 1), **result}


def check_weights(home: str, folder: str) -> dict:
    """The installed networks hold exactly the served files' arrays."""
    import numpy as np

    os.environ["PREDIFF_HOME"] = home
    import prediff
    import prediff_models as models
    from prediff.io.state_dict_file import read_state_dict
    from prediff.pipelines.published_weights import RELEASES

    model = prediff.load_model("sevirlr")
    worst = 0.0
    for component, file in RELEASES["sevirlr"].files.items():
        served = read_state_dict(Path(folder) / file.name)
        ours = models.official_state_dict(model.network(component))
        for key, value in served.items():
            worst = max(worst, float(np.abs(np.asarray(ours[key]).reshape(value.shape) - value).max()))
    return {"max_abs_difference": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sevirlr")
    parser.add_argument("--work", type=Path, default=Path("/tmp/prediff-weights-bench"))
    parser.add_argument("--sample", action="store_true")
    parser.add_argument("--sample-steps", type=int, default=None, help="solver steps of the timed forecast "
                                                                      "(default: the model's 20)")
    args = parser.parse_args()
    served, home = args.work / "served", args.work / f"home-{os.getpid()}"
    start = time.perf_counter()
    sizes = isolated("benchmarks.published_weights", "write_official_files", preset=args.preset,
                     folder=str(served))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    report = {"preset": args.preset,
              "write_official_files_s": round(time.perf_counter() - start, 1), "files": sizes,
              "install": isolated("benchmarks.published_weights", "install", home=str(home), url_base=url),
              "check": isolated("benchmarks.published_weights", "check_weights", home=str(home), folder=str(served))}
    httpd.shutdown()
    if args.sample:
        env = dict(os.environ, PREDIFF_HOME=str(home))
        cmd = [sys.executable, "-m", "prediff", "sample", "--model", "sevirlr", "--input",
               str(ROOT / "examples" / "radar.h5"), "--out", str(args.work / "forecast"), "--samples", "8",
               "--align", "avg_x", "--overwrite"]
        if args.sample_steps:
            cmd += ["--steps", str(args.sample_steps)]
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True)
        peak = [line for line in proc.stderr.splitlines() if "Maximum resident" in line]
        report["sample"] = {"seconds": round(time.perf_counter() - start, 1), "exit": proc.returncode,
                            "peak_rss_mb": round(int(peak[0].split()[-1]) / 1024, 1) if peak else None,
                            "output_tail": (proc.stdout.strip().splitlines() or [""])[-1][-300:]}
        if proc.returncode:
            report["sample"]["stderr_tail"] = proc.stderr.strip().splitlines()[-25:-20]
    emit(report)


if __name__ == "__main__":
    main()
