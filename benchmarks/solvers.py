"""Skill and cost of each (solver, steps) configuration on held-out data: CSI-M, CRPS, frequency bias at 133 and 181,
wall time, with the same cases and seeds for every configuration.

    python -m benchmarks.solvers --data DIR [--split test] [--limit N] [--model demo] [--members 8]
                                 [--configs dpmpp-20 dpmpp3m-10 sasolver-10 ...] [--eta 1] [--set KEY=VALUE ...]
                                 [--out DIR]

Each configuration is `prediff score --split` (the whole-split evaluation: case i forecast with seed `seed + i`,
exactly as `prediff sample` would) in its own process, so its wall time and peak RSS are its own; the baselines are
left out (they do not depend on the solver). `wall_s` is the whole evaluation: model load, compilation, forecasts and
scoring. With `--out DIR` each configuration's scores.json and per-batch scorer states stay in DIR/<config> (for
paired comparisons later); otherwise they go to a temporary folder. Prints one JSON document.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.measure import emit, isolated

DEFAULT_CONFIGS = ("dpmpp-20", "dpmpp3m-8", "dpmpp3m-10", "dpmpp3m-15", "sasolver-8", "sasolver-10", "sasolver-15")


def parse_config(text: str):
    """'sasolver-10' → ('sasolver', 10), checked against the sampler names."""
    from prediff.config.schema import SAMPLERS

    name, _, steps = text.rpartition("-")
    if name not in SAMPLERS or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SAMPLER-STEPS with SAMPLER one of "
                                         f"{', '.join(SAMPLERS)}, like dpmpp-20")
    return name, int(steps)


def score_configuration(data: str, split: str, limit: int, model: str, members: int, sampler: str, steps: int,
                        eta: float, sets: list, out: str) -> dict:
    """One configuration's evaluation (runs in its own process): the headline scores and the wall time."""
    from prediff.pipelines.score_run import run_score

    values = {"data.root": data, "sample.sampler": sampler, "sample.steps": steps, "sample.eta": eta,
              "sample.samples": members, "score.baselines": ()}
    start = time.perf_counter()
    scores, _, settings = run_score(Path(out), split=split, limit=limit, model=model, sets=sets, values=values,
                                    overwrite=True)
    wall = time.perf_counter() - start
    return {"config": f"{sampler}-{steps}", "sampler": sampler, "steps": steps, "eta": eta,
            "alignment": scores["settings"]["alignment"], "cases": scores["n_cases"], "members": scores["n_members"],
            "csi_m": scores["csi"]["avg"], "crps": scores["crps"]["pool1"], "bias_133": scores["bias"]["133"],
            "bias_181": scores["bias"]["181"], "wall_s": round(wall, 2), "scores": str(Path(out) / "scores.json")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="SEVIR-LR tree (CATALOG.csv + data/vil)")
    parser.add_argument("--split", default="test", choices=("test", "val"))
    parser.add_argument("--limit", type=int, default=None, help="first N cases of the split (default: all)")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--configs", nargs="+", type=parse_config, default=[parse_config(c) for c in DEFAULT_CONFIGS],
                        metavar="SAMPLER-STEPS")
    parser.add_argument("--eta", type=float, default=1.0, help="solver noise of every configuration (1: SDE forms)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="further config overrides for every configuration, e.g. sample.align=avg_x")
    parser.add_argument("--out", type=Path, default=None, help="keep each configuration's scores in OUT/<config>")
    parser.add_argument("--timeout", type=float, default=24 * 3600, help="seconds per configuration")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="prediff-solvers-") as scratch:
        root = args.out if args.out is not None else Path(scratch)
        results = []
        for sampler, steps in args.configs:
            results.append(isolated("benchmarks.solvers", "score_configuration", timeout=args.timeout,
                                    data=str(args.data), split=args.split, limit=args.limit, model=args.model,
                                    members=args.members, sampler=sampler, steps=steps, eta=args.eta,
                                    sets=args.sets, out=str(root / f"{sampler}-{steps}")))
            if args.out is None:
                results[-1].pop("scores", None)  # in the temporary folder, gone when this ends
        emit({"split": args.split, "limit": args.limit, "model": args.model, "results": results})


if __name__ == "__main__":
    main()
