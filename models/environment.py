"""The process environment MindSpore needs, applied once, before MindSpore is first imported.

* `ONEDNN_MAX_CPU_ISA=AVX2`: on AVX-512 CPUs MindSpore's oneDNN otherwise picks a near-reference 3x3 convolution,
  100-250x slower (measured; see docs/performance-history.md);
* `OMP_WAIT_POLICY=PASSIVE`: the fused kernels' OpenMP threads sleep between calls instead of spinning, which
  otherwise takes the cores from MindSpore's own thread pool running the next operators (measured on 2 cores: the
  `small` VAE trainer 0.60 → 0.28 s a step, README command one's 20 denoising steps 31.8 → 20.0 s);
* `GLOG_v=3`: MindSpore logs errors only.
Values the user already set win. Importing the network package (and so the prediff package, which imports it
first) applies them; nothing else in prediff touches these variables.
"""
import os

DEFAULTS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_WAIT_POLICY": "PASSIVE", "GLOG_v": "3"}


def prepare() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)


prepare()
