"""Forecasts of domains larger than the model's window: cost, and seam quality against the windows' overlap.

    python -m benchmarks.tiled_forecast [--members 8] [--km 1024] [--timed-steps 2] [--skip-sevirlr]
    python -m benchmarks.tiled_forecast --seams [--overlaps 0 16 32 48 64] [--modes 0 1 2] [--members 4]
                                        [--steps 10] [--cases 2] [--domain 256 384]

Cost (default): the windows a `--km` × `--km` domain (3 km pixels) needs at each overlap, and the seconds of one
window of an aligned `--members`-member forecast with the sampler of each model's config: measured with the bundled
demo model (a whole tiled forecast of two windows, warm, divided by two; `per_window_over_single` compares it with
a warm forecast of one 128 × 128 frame), and with random-weight networks of the `sevirlr` preset (encoding,
decoding and `--timed-steps` solver steps at its member batch, extrapolated to its 20 DPM-Solver++ steps as
`benchmarks.sample` does). `extrapolated_s` = windows × per-window seconds. `domain_noise_per_window_s`: what
drawing each window's noise on the `--km` domain's latent grid adds to a window (`noise_draws` draws of all
members, timed without networks), and `domain_noise_share` that over the window's seconds.

`--seams`: the bundled demo model on `--cases` synthetic domains of `--domain` pixels (256 × 384; three synthetic
events overlaid, truth known), forecast at each `--overlaps` value in each of three ways (`--modes`): 0, prediff's — windows forecast one
after another, every member's noise drawn on the whole domain's latent grid and cut per window; 1, the same with
each window drawing its own noise (as if each were forecast alone); 2, all windows denoised together as one latent
field, blended after every solver step (as panorama diffusion does). Per setting: `edge_step_ratio` — the mean step
between neighbouring pixels across window edges over that inside single windows (1 = the seams are invisible in
the statistic), and `largest_edge_line_ratio`, `inside_p98_ratio` — the largest edge line and the 98th percentile
of the lines inside windows on that scale; `edge_to_beside` (mean) and `largest_edge_to_beside` — each edge line's
step over the mean step of the lines within 4 pixels of it (a seam stands out from its neighbours: > 1); `overlap_mismatch` — RMS difference of two neighbouring windows'
members where they overlap, over the RMS of the members there (0 = the windows agree); `overlap_spread` — the
members' standard deviation in the overlaps over that of the unblended windows there (below 1: blending averaged
disagreeing members away); `mae` — mean absolute error of the
ensemble mean against the truth (digital VIL); `windows` and `seconds`.
"""
from __future__ import annotations

import argparse

from benchmarks.measure import emit, isolated

KM_PER_PIXEL = 3.0


def layouts(km: float, overlaps) -> dict:
    from prediff.pipelines.tiled_forecast import tile_layout

    side = int(round(km / KM_PER_PIXEL))
    return {str(o): tile_layout(side, side, 128, o, 8).count for o in overlaps}


def noise_draws(sample, diffusion_timesteps: int) -> int:
    """Noise draws of one UNet call: the starting noise, and one per solver step for stochastic samplers."""
    from prediff.pipelines.sampler import solver_timesteps

    steps = len(solver_timesteps(sample.sampler, sample.steps, diffusion_timesteps))
    return 1 + (steps if sample.sampler == "ddpm" or sample.eta > 0 else 0)


def window_noise_s(target_shape, members: int, km: float, step: int, repeats: int = 3) -> float:
    """Seconds one draw of `members` members' noise takes for one window of a `km` × `km` domain (the whole
    domain's latent planes drawn, the window's part kept), over the same draw for a lone window: the extra cost of
    cutting each window's noise from the domain's. Medians of `repeats`."""
    import time

    import numpy as np

    from prediff.pipelines.sampler import LatentCut

    side = -(-int(round(km / KM_PER_PIXEL)) // step)  # latent cells of the padded domain
    cut = LatentCut(side, side, 0, 0)

    def median(fn) -> float:
        times = []
        for k in range(repeats):
            rng = np.random.default_rng(k)
            start = time.perf_counter()
            fn(rng)
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    whole = median(lambda rng: cut.draw(rng, members, target_shape))
    alone = median(lambda rng: rng.standard_normal((members,) + tuple(target_shape), dtype=np.float32))
    return max(whole - alone, 0.0)


def demo_window_cost(members: int, km: float) -> dict:
    """Seconds of the demo model's configured forecast (aligned), warm: one 128 × 128 frame (`single_s`), and per
    window of a two-window domain (`per_window_s`); their ratio; the extra seconds per window of drawing each
    window's noise on the latent grid of a `km` × `km` domain, and that over `per_window_s`."""
    import time

    import numpy as np

    import prediff
    from prediff.config.forecast_settings import forecast_config
    from prediff.pipelines.forecast import run_forecast
    from prediff.pipelines.tiled_forecast import model_window
    from prediff.runtime import setup_runtime

    model = prediff.load_model("demo")
    settings = forecast_config(model.config, None, [], {"sample.samples": members, "sample.align": "avg_x"})
    setup_runtime(settings.device, settings.seed)
    rng = np.random.default_rng(0)
    context = rng.random((7, 128, 128 + 96), dtype=np.float32) * 0.3
    run_forecast(model, settings, context[:, :, :128], None)  # compiles
    start = time.perf_counter()
    run_forecast(model, settings, context[:, :, :128], None)
    single = time.perf_counter() - start
    start = time.perf_counter()
    result = run_forecast(model, settings, context, None)
    per_window = (time.perf_counter() - start) / result.layout.count
    s = settings.sample
    draws = noise_draws(s, model.config.diffusion.timesteps)
    noise = draws * window_noise_s(model.config.unet.target_shape, members, km, model_window(model.config)[1])
    return {"model": "demo", "members": members, "sampler": f"{s.sampler}-{s.steps}", "member_batch": s.member_batch,
            "single_s": round(single, 2), "windows_timed": result.layout.count, "per_window_s": round(per_window, 2),
            "per_window_over_single": round(per_window / single, 3), "noise_draws": draws,
            "domain_noise_per_window_s": round(noise, 3), "domain_noise_share": round(noise / per_window, 4)}


def sevirlr_window_cost(members: int, timed_steps: int, km: float) -> dict:
    """Seconds per window of an aligned forecast with sevirlr-size networks (random weights; the cost does not
    depend on them), at the preset's member batch and solver; the noise of a `km` domain as for the demo."""
    from benchmarks.sample import build_forecaster, timed_forecast
    from prediff.config import load_config
    from prediff.pipelines.tiled_forecast import model_window

    cfg = load_config("sevirlr")
    s = cfg.sample
    batch = min(s.member_batch or members, members)
    calls = -(-members // batch)
    forecaster, cfg = build_forecaster("sevirlr", f"{s.sampler}-{s.steps}", aligned=True)
    r = timed_forecast(forecaster, cfg, batch, timed_steps)
    per_window = r["encode_s"] + calls * (r["decode_s"] + r["per_step_s"] * r["solver_steps"])
    draws = noise_draws(s, cfg.diffusion.timesteps)
    noise = draws * window_noise_s(cfg.unet.target_shape, members, km, model_window(cfg)[1])
    return {"model": "sevirlr-size networks (random weights)", "members": members,
            "sampler": f"{s.sampler}-{r['solver_steps']}", "member_batch": batch, "per_step_s": r["per_step_s"],
            "timed_steps": r["timed_steps"], "per_window_s": round(per_window, 1), "noise_draws": draws,
            "domain_noise_per_window_s": round(noise, 3), "domain_noise_share": round(noise / per_window, 4)}


def cost(members: int, km: float, timed_steps: int, skip_sevirlr: bool) -> dict:
    from prediff.config import load_config

    overlap = load_config("demo").sample.tile_overlap
    counts = layouts(km, (0, 16, 32, 48, 64))
    out = {"benchmark": "tiled_forecast", "domain_km": km, "domain_px": int(round(km / KM_PER_PIXEL)),
           "windows_by_overlap": counts, "overlap": overlap, "windows": counts[str(overlap)], "models": []}
    parts = [isolated("benchmarks.tiled_forecast", "demo_window_cost", members=members, km=km)]
    if not skip_sevirlr:
        parts.append(isolated("benchmarks.tiled_forecast", "sevirlr_window_cost", members=members,
                              timed_steps=timed_steps, km=km))
    for part in parts:
        if "per_window_s" in part:
            part["extrapolated_s"] = round(part["per_window_s"] * out["windows"], 1)
        out["models"].append(part)
    return out


# ---------------------------------------------------------------------------------------------------------------
# seams


def synthetic_domain(case: int, height: int = 256, width: int = 384):
    """(context (7, H, W), truth (6, H, W)) on 0–1: three synthetic events of max(H, W) pixels overlaid (denser
    storms than one)."""
    import numpy as np

    from prediff.data.synthetic import storm_event

    events = [storm_event(np.random.default_rng([case, k]), frames=13, size=max(height, width)) for k in range(3)]
    field = np.max(np.stack(events), axis=0)[:height, :width]
    frames = np.moveaxis(field, -1, 0).astype(np.float32) / 255.0
    return frames[:7], frames[7:]


class _Recorder:
    """A Forecaster that keeps each window's unblended members, window by window: what `run` returns (prediff's
    path) or what `decode` returns (`one_field`)."""

    def __init__(self, forecaster):
        self.forecaster, self.pieces = forecaster, []

    def __getattr__(self, name):
        return getattr(self.forecaster, name)

    def run(self, *args, **kwargs):
        out = self.forecaster.run(*args, **kwargs)
        self.pieces.append(out[0])
        return out

    def decode(self, z):
        out = self.forecaster.decode(z)
        self.pieces.append(out.asnumpy()[..., 0])
        return out


def windows_apart(forecaster, layout, context, truth, seed: int, target):
    """prediff's path with every window drawing its own noise instead of its part of the domain's."""
    from prediff.pipelines.tiled_forecast import forecast_tiled

    class OwnNoise:  # each window its own seed, no cut
        def __init__(self):
            self.windows = 0

        def __getattr__(self, name):
            return getattr(forecaster, name)

        def run(self, contexts, y_hat, seeds, progress=None, cut=None):
            self.windows += 1
            return forecaster.run(contexts, y_hat, [int(seeds[0]) * 1000 + self.windows], progress)

    return forecast_tiled(OwnNoise(), layout, context, truth, seed, target)


def one_field(forecaster, layout, context, truth, seed: int, target):
    """The alternative of denoising all windows together as one latent field (as panorama diffusion does): at
    every solver step each window takes its part of the field through the UNet and the windows' results are
    blended back into the field with the same weights on the latent grid; then each window is decoded and the
    pixels blended. All members in one UNet call."""
    import numpy as np
    from mindspore import Tensor

    import prediff_models.diffusion as D
    from prediff.pipelines.tiled_forecast import TiledForecast, axis_weights, pad_to_layout

    padded, padded_truth = pad_to_layout(context, layout), pad_to_layout(truth, layout)
    n, step, m = layout.window, layout.step, forecaster.sample.samples
    sampler, shape = forecaster.sampler, forecaster.target_shape
    ly = axis_weights([t // step for t in layout.tops], n // step)
    lx = axis_weights([t // step for t in layout.lefts], n // step)
    windows = []
    for i, j, top, left in layout.windows():
        piece = np.ascontiguousarray(padded[:, top:top + n, left:left + n])
        y = target(piece, None if padded_truth is None else padded_truth[:, top:top + n, left:left + n])
        cells = (slice(None), slice(None), slice(top // step, top // step + shape[1]),
                 slice(left // step, left // step + shape[2]))
        windows.append((Tensor(np.repeat(forecaster.context_latents(piece[None]), m, axis=0)),
                         Tensor(np.full((m, 1), y, np.float32)), cells,
                         (ly[i][:, None] * lx[j][None, :])[None, None, :, :, None]))
    rng = np.random.default_rng(seed)
    field = (m, shape[0], layout.padded_height // step, layout.padded_width // step, shape[3])
    steps, dpmpp = sampler.timesteps, sampler.sampler == "dpmpp"
    coefs = [[Tensor(np.float32(v)) for v in c] for c in D.dpmpp_coefficients(sampler.schedule, steps, sampler.eta)]
    zeros = Tensor(np.zeros((m,) + tuple(shape), np.float32))
    z, prev = rng.standard_normal(field, dtype=np.float32), np.zeros(field, np.float32)
    for k, t in enumerate(steps):
        fresh = rng.standard_normal(field, dtype=np.float32) if sampler.sampler == "ddpm" or sampler.eta > 0 else None
        z_next, prev_next = np.zeros_like(z), np.zeros_like(prev)
        t_vec = Tensor(np.full((m,), t, np.int32))
        t_prev = Tensor(np.full((m,), steps[k + 1] if k + 1 < len(steps) else -1, np.int32))
        for cond, y, cells, weight in windows:
            def part(a):
                return zeros if a is None else Tensor(np.ascontiguousarray(a[cells]))

            if dpmpp:
                out, x0 = sampler._step(part(z), t_vec, cond, part(prev), *(c[k] for c in coefs[:4]), part(fresh),
                                        coefs[4][k], y)
                prev_next[cells] += weight * x0.asnumpy()
            else:
                out = sampler._step(part(z), t_vec, t_prev, cond, part(fresh), y)
            z_next[cells] += weight * out.asnumpy()
        z, prev = z_next, prev_next
    wy, wx = axis_weights(layout.tops, n), axis_weights(layout.lefts, n)
    blended = np.zeros((m, shape[0], layout.padded_height, layout.padded_width), np.float32)
    for (i, j, top, left), (_, _, cells, _) in zip(layout.windows(), windows):
        pixels = forecaster.decode(Tensor(np.ascontiguousarray(z[cells]))).asnumpy()[..., 0]
        blended[..., top:top + n, left:left + n] += pixels * (wy[i][:, None] * wx[j][None, :])
    return TiledForecast(members=blended[..., :layout.height, :layout.width], window_targets=None)


MODES = ("noise cut from the domain's", "own noise per window", "one latent field")


def seam_quality(overlaps, members: int, steps: int, cases: int, modes=MODES, domain=(256, 384)) -> list:
    import json
    import sys
    import time

    import numpy as np

    import prediff
    from prediff.config.forecast_settings import forecast_config
    from prediff.pipelines.forecast import AlignmentRequest, Forecaster, alignment_target
    from prediff.pipelines.tiled_forecast import forecast_tiled, layout_for, seam_steps
    from prediff.runtime import setup_runtime

    model = prediff.load_model("demo")
    settings = forecast_config(model.config, None, [], {"sample.samples": members, "sample.steps": steps,
                                                         "sample.align": "avg_x"})
    setup_runtime(settings.device, settings.seed)
    forecaster = Forecaster(model, settings.sample)
    request = AlignmentRequest.from_config(settings.sample)
    rows = []
    for overlap in overlaps:
        for mode in modes:
            stats = {"edge": [], "edge_max": [], "inside": [], "inside_p98": [], "beside": [], "beside_max": [],
                     "mismatch": [], "spread": [], "mae": [], "s": []}
            for case in range(cases):
                context, truth = synthetic_domain(case, *domain)
                layout = layout_for(model.config, context.shape, overlap)
                recorder = _Recorder(forecaster)
                start = time.perf_counter()
                target = lambda c, t: alignment_target(request, c, t)  # noqa: E731
                run = {MODES[0]: forecast_tiled, MODES[1]: windows_apart, MODES[2]: one_field}[mode]
                fc = run(recorder, layout, context, truth, case, target)
                stats["s"].append(time.perf_counter() - start)
                members_ = np.clip(fc.members, 0, 1) * 255.0
                steps_ = seam_steps(members_, layout)
                stats["edge"].append(steps_["edges"].mean())
                stats["edge_max"].append(steps_["edges"].max())
                stats["inside"].append(steps_["inside"].mean())
                stats["inside_p98"].append(np.quantile(steps_["inside"], 0.98))
                stats["beside"].append(np.mean(steps_["edges"] / steps_["beside"]))
                stats["beside_max"].append(np.max(steps_["edges"] / steps_["beside"]))
                stats["mae"].append(np.abs(members_.mean(0) - truth * 255.0).mean())
                mismatch, spread = _overlap_agreement(recorder.pieces, layout, members_)
                stats["mismatch"].append(mismatch)
                stats["spread"].append(spread)
            rows.append({"overlap": overlap, "mode": mode, "windows": layout.count,
                         "edge_step_ratio": round(float(np.mean(stats["edge"]) / np.mean(stats["inside"])), 3),
                         "largest_edge_line_ratio": round(float(np.mean(stats["edge_max"]) /
                                                                np.mean(stats["inside"])), 3),
                         "inside_p98_ratio": round(float(np.mean(stats["inside_p98"]) / np.mean(stats["inside"])), 3),
                         "edge_to_beside": round(float(np.mean(stats["beside"])), 3),
                         "largest_edge_to_beside": round(float(np.max(stats["beside_max"])), 3),
                         "overlap_mismatch": round(float(np.mean(stats["mismatch"])), 3),
                         "overlap_spread": round(float(np.mean(stats["spread"])), 3),
                         "mae": round(float(np.mean(stats["mae"])), 3),
                         "seconds": round(float(np.mean(stats["s"])), 1)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # each setting as it is measured
    return rows


def _overlap_agreement(pieces, layout, blended):
    """(relative RMS difference of horizontally and vertically neighbouring windows' members over their overlap,
    members' spread in the blended overlaps over the unblended windows' spread there)."""
    import numpy as np

    n, cols = layout.window, len(layout.lefts)
    windows = layout.windows()
    diffs, scale, spread_blend, spread_raw = [], [], [], []
    for k, (i, j, top, left) in enumerate(windows):
        for di, dj in ((0, 1), (1, 0)):
            if i + di >= len(layout.tops) or j + dj >= cols:
                continue
            m = (i + di) * cols + (j + dj)
            _, _, top2, left2 = windows[m]
            y0, y1 = max(top, top2), min(top, top2) + n
            x0, x1 = max(left, left2), min(left, left2) + n
            y1, x1 = min(y1, layout.height), min(x1, layout.width)
            if y1 <= y0 or x1 <= x0:
                continue
            a = np.clip(pieces[k][..., y0 - top:y1 - top, x0 - left:x1 - left], 0, 1) * 255.0
            b = np.clip(pieces[m][..., y0 - top2:y1 - top2, x0 - left2:x1 - left2], 0, 1) * 255.0
            diffs.append(np.sqrt(np.mean((a - b) ** 2)))
            scale.append(np.sqrt(0.5 * (np.mean(a ** 2) + np.mean(b ** 2))))
            spread_raw.append(0.5 * (a.std(0).mean() + b.std(0).mean()))
            spread_blend.append(blended[..., y0:y1, x0:x1].std(0).mean())
    return (float(np.sum(diffs) / max(np.sum(scale), 1e-9)),
            float(np.sum(spread_blend) / max(np.sum(spread_raw), 1e-9)))


def seams(overlaps, members: int, steps: int, cases: int, modes=MODES, domain=(256, 384)) -> dict:
    return {"benchmark": "tiled_forecast seams", "model": "demo", "domain_px": list(domain), "members": members,
            "sampler_steps": steps, "cases": cases,
            "results": seam_quality(overlaps, members, steps, cases, modes, domain)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=None, help="ensemble members (default 8; --seams 4)")
    parser.add_argument("--km", type=float, default=1024.0, help="side of the square domain to extrapolate to")
    parser.add_argument("--timed-steps", type=int, default=2, help="solver steps timed with sevirlr-size networks")
    parser.add_argument("--skip-sevirlr", action="store_true")
    parser.add_argument("--seams", action="store_true", help="measure seam quality against the overlap instead")
    parser.add_argument("--overlaps", type=int, nargs="+", default=[0, 16, 32, 48, 64])
    parser.add_argument("--steps", type=int, default=10, help="--seams: solver steps of the demo's sampler")
    parser.add_argument("--cases", type=int, default=2, help="--seams: synthetic domains")
    parser.add_argument("--domain", type=int, nargs=2, default=[256, 384], metavar=("H", "W"),
                        help="--seams: the synthetic domain's size in pixels")
    parser.add_argument("--modes", type=int, nargs="+", default=list(range(len(MODES))),
                        help="--seams: which of " + "; ".join(f"{k}: {m}" for k, m in enumerate(MODES)))
    args = parser.parse_args()
    if args.seams:
        emit(seams(args.overlaps, args.members or 4, args.steps, args.cases, [MODES[k] for k in args.modes],
                   tuple(args.domain)))
    else:
        emit(cost(args.members or 8, args.km, args.timed_steps, args.skip_sevirlr))


if __name__ == "__main__":
    main()
