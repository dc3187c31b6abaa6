"""How much memory the system can give a process now, for MindSpore's checkpoint reader.

MindSpore's `load_checkpoint` refuses a `.ckpt` larger than the *free* memory (`sysconf(SC_AVPHYS_PAGES)`), which
leaves out the page cache that the kernel hands back on demand. On Linux free memory is usually small while
gigabytes sit in the cache (right after a download, the downloaded and converted files themselves), so a 548 MB
UNet checkpoint was refused with 8 GB available. `measure_available_memory_in_mindspore` makes that check use the
kernel's estimate of memory available to a new allocation (`MemAvailable` of /proc/meminfo), where there is one.
"""
from __future__ import annotations

from typing import Optional


def available_memory() -> Optional[int]:
    """Bytes a process can allocate now without swapping (free memory plus reclaimable cache), from
    /proc/meminfo's MemAvailable; None where the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def measure_available_memory_in_mindspore() -> None:
    """Point MindSpore's checkpoint size check at `available_memory` (once; its own measure where that is None)."""
    from mindspore.train import serialization

    original = getattr(serialization, "_get_available_memory", None)
    if original is None or getattr(original, "prediff_available_memory", False):
        return

    def measured() -> Optional[int]:
        found = available_memory()
        return found if found is not None else original()

    measured.prediff_available_memory = True
    serialization._get_available_memory = measured
