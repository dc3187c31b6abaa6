"""The process environment MindSpore needs, applied once, before MindSpore is first imported.

* `ONEDNN_MAX_CPU_ISA=AVX2`: on AVX-512 CPUs MindSpore's oneDNN otherwise picks a near-reference 3x3 convolution,
  100-250x slower (shared/reference/mindspore-cpu-notes.md);
* `GLOG_v=3`: MindSpore logs errors only.
Values the user already set win. Importing the network package (and so the prediff package, which imports it
first) applies them; nothing else in prediff touches these variables.
"""
import os

DEFAULTS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "GLOG_v": "3"}


def prepare() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)


prepare()
