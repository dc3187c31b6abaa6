"""The forecast path at the paper configuration (`sevirlr`) against this machine's fp32 matmul peak.

    python -m benchmarks.forecast [--preset sevirlr] [--members 8] [--member-batch N] [--timed-steps 3]
                                  [--skip-batch1] [--precision fp32|bf16] [--official FILE]

Prints JSON with: the measured fp32 matmul rate (GFLOP/s, best of compiled 2048² and 4096² matmuls); UNet forward
seconds at batch 1 and batch `members` (and their ratio to the matmul floor, using the official network's 653 GFLOP
per member forward measured with the official code); VAE seconds per encoded and per decoded
frame and the encode-7 + decode-(6·members) total against its conv FLOP floor (counted from the network's own Conv2d
shapes as PyTorch computes them: the decoder's upsampling convolutions at 9 taps per output pixel, where prediff's
fused upsampling kernel does 4, so the VAE can come in under its floor); one guided solver step at the member batch (`--member-batch`, default the preset's `sample.member_batch`, 0
= all members in one call); and end-to-end seconds for an aligned `members`-member forecast — encode-7 + decode-all
from the VAE part plus ⌈members / member batch⌉ × steps guided steps — with the preset's own solver and steps,
dpmpp-20, DDIM-50 and DDPM-1000 (solver
loops timed for `--timed-steps` steps and extrapolated) next to the official sampler's sequential DDPM-1000 (members
one at a time: 8 × (coding of one member + 1000 one-member steps)). Each part runs in its own process.

`--official FILE` takes a JSON object of the official PyTorch networks' timings (`unet_forward_b1_s`, ...) run
in the same session on the same machine, copies it under `official`, and adds `vs_official`: our time over the
official one for the UNet forward at batch 1 and at batch 8, and for the VAE encoding 7 frames and decoding 6
(> 1: slower than PyTorch). With `--precision bf16` the comparison is with the official networks under PyTorch's
bf16 autocast (the `*_bf16_autocast_s` figures of the reference bf16 benchmark).
"""
from __future__ import annotations

import argparse

from benchmarks.measure import emit, isolated

UNET_GFLOP_PER_MEMBER = 653.0  # the official CuboidTransformerUNet forward at the paper size, counted on its code


def matmul_rate(sizes=(2048, 4096), repeats: int = 8) -> dict:
    """The machine's fp32 matmul rate: the best of `repeats` compiled square matmuls at each size (the floor is
    taken at the fastest rate seen, so noise on a shared machine can only make the floors stricter)."""
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor, ops

    from benchmarks.measure import timed

    @ms.jit
    def mm(x):
        return ops.matmul(x, x)

    rates = {}
    for n in sizes:
        a = Tensor(np.random.default_rng(0).standard_normal((n, n), dtype=np.float32))
        t = timed(lambda: mm(a), repeats)
        rates[str(n)] = round(2 * n**3 / t["min_s"] / 1e9, 1)
    return {"gflops_by_size": rates, "gflops": max(rates.values())}


def unet_forward(preset: str, batch: int, repeats: int = 2, precision: str = "fp32") -> dict:
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor

    import prediff_models as models
    from benchmarks.measure import timed
    from prediff.config import load_config
    from prediff_models.kernels import apply_precision

    cfg = load_config(preset)
    net = models.build("unet", cfg.model_kwargs("unet"))
    net.set_train(False)
    apply_precision(precision, net)
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((batch, *cfg.unet.target_shape), dtype=np.float32))
    cond = Tensor(rng.standard_normal((batch, *cfg.unet.input_shape), dtype=np.float32))
    t = Tensor(np.full((batch,), 500, np.int32))

    @ms.jit
    def forward(x, t, cond):
        return net(x, t, cond)

    return {"preset": preset, "batch": batch, "precision": precision, **timed(lambda: forward(x, t, cond), repeats)}


def conv_flops(net, x) -> float:
    """FLOPs of every Conv2d in one PyNative call of `net(x)` (2·Cin/groups·Cout·k²·Hout·Wout per conv)."""
    from mindspore import nn

    total = [0.0]
    handles = []
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.Conv2d):
            def hook(c, inputs, output):
                kh, kw = c.kernel_size
                b, cout, h, w = output.shape
                total[0] += 2.0 * b * cout * h * w * kh * kw * c.in_channels / c.group
            handles.append(cell.register_forward_hook(hook))
    net(x)
    for h in handles:
        h.remove()
    return total[0]


def vae_coding(preset: str, members: int, repeats: int = 2, precision: str = "fp32") -> dict:
    import numpy as np
    from mindspore import Tensor

    import prediff_models as models
    from benchmarks.measure import timed
    from prediff.config import load_config
    from prediff.pipelines.latents import jit_decoder, jit_encoder
    from prediff_models.kernels import apply_precision

    cfg = load_config(preset)
    vae = models.build("vae", cfg.model_kwargs("vae"))
    vae.set_train(False)
    apply_precision(precision, vae)
    size, t_in = cfg.data.img_size, cfg.unet.input_shape[0]
    t_out, h, w, c = cfg.unet.target_shape
    rng = np.random.default_rng(0)
    frames = Tensor(rng.random((1, t_in, size, size, 1), dtype=np.float32))
    latents = Tensor(rng.standard_normal((members, t_out, h, w, c), dtype=np.float32))
    encode, decode = jit_encoder(vae), jit_decoder(vae)
    enc, dec = timed(lambda: encode(frames), repeats), timed(lambda: decode(latents), repeats)
    one = Tensor(rng.random((1, 1, size, size), dtype=np.float32))
    enc_flops = conv_flops(vae.encoder, one) + conv_flops(vae.quant_conv, vae.encoder(one))
    z = Tensor(rng.standard_normal((1, c, h, w), dtype=np.float32))
    dec_flops = conv_flops(vae.post_quant_conv, z) + conv_flops(vae.decoder, vae.post_quant_conv(z))
    return {"preset": preset, "encode_frames": t_in, "decode_frames": members * t_out,
            "encode_s": enc["min_s"], "decode_s": dec["min_s"],
            "encode_per_frame_s": round(enc["min_s"] / t_in, 4),
            "decode_per_frame_s": round(dec["min_s"] / (members * t_out), 4),
            "conv_gflop": round((enc_flops * t_in + dec_flops * members * t_out) / 1e9, 1)}


def guided_forecast(preset: str, members: int, timed_steps: int, precision: str = "fp32") -> dict:
    from benchmarks.sample import build_forecaster, timed_forecast

    forecaster, cfg = build_forecaster(preset, "ddim-50", aligned=True, precision=precision)
    r = timed_forecast(forecaster, cfg, members, timed_steps)
    return {"preset": preset, "members": members, "per_step_s": r["per_step_s"],
            "encode_decode_s": r["encode_decode_s"], "timed_steps": r["timed_steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sevirlr")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--member-batch", type=int, default=None,
                        help="members per UNet call in the guided step (default: the preset's sample.member_batch)")
    parser.add_argument("--timed-steps", type=int, default=3)
    parser.add_argument("--skip-batch1", action="store_true")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="the UNet's and VAE's arithmetic (bf16 needs AVX512_BF16 or PREDIFF_BF16_EMULATE=1)")
    parser.add_argument("--official", type=argparse.FileType("r"), default=None,
                        help="JSON of the official PyTorch networks' timings from the same session")
    args = parser.parse_args()
    reference = None  # the official networks' figures
    if args.official is not None:
        import json

        try:
            reference = json.load(args.official)
        except ValueError as err:
            parser.error(f"--official {args.official.name}: not JSON ({err})")
        if not isinstance(reference, dict):
            parser.error(f"--official {args.official.name}: expected a JSON object of timings")
    m = args.members
    from prediff.config import load_config
    preset_sample = load_config(args.preset).sample
    if args.member_batch is None:
        args.member_batch = preset_sample.member_batch
    mb = min(args.member_batch or m, m)
    chunks = -(-m // mb)
    peak = isolated("benchmarks.forecast", "matmul_rate")
    gflops = peak.get("gflops")
    unet = {} if args.skip_batch1 else {"batch1": isolated("benchmarks.forecast", "unet_forward", preset=args.preset,
                                                           batch=1, precision=args.precision)}
    unet[f"batch{m}"] = isolated("benchmarks.forecast", "unet_forward", preset=args.preset, batch=m,
                                 precision=args.precision)
    vae = isolated("benchmarks.forecast", "vae_coding", preset=args.preset, members=m, precision=args.precision)
    step = isolated("benchmarks.forecast", "guided_forecast", preset=args.preset, members=mb,
                    timed_steps=args.timed_steps, precision=args.precision)
    out = {"benchmark": "forecast", "preset": args.preset, "precision": args.precision, "members": m,
           "member_batch": mb, "matmul": peak, "unet_forward": unet, "vae": vae, "guided_step": step}
    if gflops:
        if args.preset == "sevirlr":
            for key, r in unet.items():
                if "min_s" in r:
                    floor = UNET_GFLOP_PER_MEMBER * r["batch"] / gflops
                    r.update(floor_s=round(floor, 2), times_floor=round(r["min_s"] / floor, 2))
        if "conv_gflop" in vae:
            floor = vae["conv_gflop"] / gflops
            vae.update(floor_s=round(floor, 2), times_floor=round((vae["encode_s"] + vae["decode_s"]) / floor, 2))
    if "per_step_s" in step and "decode_s" in vae:
        coding, per = vae["encode_s"] + vae["decode_s"], step["per_step_s"]
        step["per_member_step_s"] = round(per / mb, 3)
        solvers = {f"{preset_sample.sampler}-{preset_sample.steps}": preset_sample.steps,  # the preset's own
                   "dpmpp-20": 20, "ddim-50": 50, "ddpm-1000": 1000}
        e2e = {name: round(coding + chunks * n * per, 1) for name, n in solvers.items()}
        out["end_to_end_s"] = e2e
        one = isolated("benchmarks.forecast", "guided_forecast", preset=args.preset, members=1,
                       timed_steps=args.timed_steps, precision=args.precision)
        if "per_step_s" in one:
            official = m * (one["encode_decode_s"] + 1000 * one["per_step_s"])
            out["sequential_ddpm1000_s"] = round(official, 1)
            out["speedup_vs_sequential_ddpm1000"] = {k: round(official / v, 1) for k, v in e2e.items()}
    if reference is not None:
        out["official"] = reference
        ratios = {}
        # fp32 against the official fp32 figures (named as the reference fp32 benchmark names them, or as the bf16
        # one does); bf16 against the official networks under bf16 autocast
        names = {"fp32": (("unet_fwd_b1_s", "unet_fwd_b1_fp32_s"), (f"unet_fwd_b{m}_s", f"unet_fwd_b{m}_fp32_s"),
                          ("vae_encode7_decode6_s", "vae_encode7_decode6_fp32_s")),
                 "bf16": (("unet_fwd_b1_bf16_autocast_s",), (f"unet_fwd_b{m}_bf16_autocast_s",),
                          ("vae_encode7_decode6_bf16_autocast_s",))}[args.precision]

        def official_figure(candidates):
            return next((reference[n] for n in candidates if n in reference), None)

        for key, name in (("batch1", names[0]), (f"batch{m}", names[1])):
            ours, theirs = unet.get(key, {}).get("min_s"), official_figure(name)
            if isinstance(ours, (int, float)) and isinstance(theirs, (int, float)) and theirs > 0:
                ratios[f"unet_forward_{key}"] = round(ours / theirs, 2)
        # the official benchmark's VAE unit: encode 7 frames, decode 6 (ours decodes every member's frames)
        theirs = official_figure(names[2])
        if "encode_s" in vae and "decode_per_frame_s" in vae and isinstance(theirs, (int, float)) and theirs > 0:
            ours = vae["encode_s"] / vae["encode_frames"] * 7 + vae["decode_per_frame_s"] * 6
            ratios["vae_encode7_decode6"] = round(ours / theirs, 2)
        out["vs_official"] = ratios
    emit(out)


if __name__ == "__main__":
    main()
