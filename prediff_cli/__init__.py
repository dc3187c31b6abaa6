"""prediff: probabilistic precipitation nowcasting with PreDiff on MindSpore.

Importing this package prepares the process for MindSpore *before* MindSpore is loaded:
`ONEDNN_MAX_CPU_ISA=AVX2` (on AVX-512 CPUs MindSpore's oneDNN otherwise picks a near-reference 3x3
convolution, 100-250x slower) and a quieter MindSpore log level. Values the user already set win.
"""
import os

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only on stderr

__version__ = "0.1.0"
