"""Cuboid attention patterns by name: (T, H, W) → list of cuboid sizes, one attention layer each.

Only patterns without shifted windows are supported (PreDiff uses "axial")."""
from __future__ import annotations

from typing import List, Sequence, Tuple


def _axial(t, h, w) -> List[Tuple[int, int, int]]:
    return [(t, 1, 1), (1, h, 1), (1, 1, w)]


def _full(t, h, w):
    return [(t, h, w)]


def _divided_space_time(t, h, w):
    return [(t, 1, 1), (1, h, w)]


PATTERNS = {"axial": _axial, "full": _full, "divided_st": _divided_space_time}


def cuboid_sizes(pattern: str, shape: Sequence[int]) -> List[Tuple[int, int, int]]:
    """Cuboid sizes of `pattern` for a (T, H, W, ...) shape."""
    if pattern not in PATTERNS:
        raise ValueError(f"unsupported block_attn_patterns entry {pattern!r}; valid: {', '.join(PATTERNS)}")
    t, h, w = (int(d) for d in shape[:3])
    return PATTERNS[pattern](t, h, w)
