"""What a running nowcast remembers across restarts besides its cycle folders: the files it refused and the cycles
whose frames were refused, so that neither is read or forecast again until its files change.

Kept in `OUT/.watch-state.json`, rewritten atomically when it changes. The cycles done are not stored here: the
cycle folders themselves say which are done (`io.cycle_folders.done_cycles`). A state file that cannot be read
is set aside (the refused files are then read once more) rather than stopping the service.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

from prediff.errors import InputError
from prediff.io.atomic import atomic_write_text
from prediff.io.cycle_folders import cycle_time
from prediff.io.untrusted import read_bounded

STATE_NAME = ".watch-state.json"
#: a state file larger than this is not ours (hundreds of refused files take a few hundred kB)
_MAX_BYTES = 8 << 20
#: refused cycles remembered (the newest)
MAX_FAILED = 64

Signature = List[Tuple[str, int, int]]  # (file name, size, modification time in ns) of each context file


@dataclass
class WatchState:
    refused: Dict[str, Tuple[int, int, str]] = field(default_factory=dict)  # file name → size, mtime ns, reason
    failed: Dict[str, Tuple[Signature, str]] = field(default_factory=dict)  # cycle name → its files, reason

    @classmethod
    def load(cls, out) -> Tuple["WatchState", str]:
        """The state kept in `out`, and a line to tell when it had to be set aside ("" otherwise)."""
        path = Path(out) / STATE_NAME
        if not path.exists():
            return cls(), ""
        try:
            raw = json.loads(read_bounded(path, _MAX_BYTES, "watch state").decode("utf-8"))
            refused = {str(name): (int(size), int(mtime), str(why))
                       for name, (size, mtime, why) in dict(raw.get("refused", {})).items()}
            failed = {str(cycle): ([(str(n), int(s), int(m)) for n, s, m in files], str(why))
                      for cycle, (files, why) in dict(raw.get("failed", {})).items()}
        except (InputError, ValueError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            return cls(), f"{path} could not be read ({exc}); starting without it"
        return cls(refused=refused, failed=failed), ""

    def save(self, out) -> None:
        newest = sorted(self.failed, key=lambda name: (cycle_time(name) or dt.datetime.min, name))[-MAX_FAILED:]
        payload = {"version": 1, "refused": {k: list(v) for k, v in sorted(self.refused.items())},
                   "failed": {k: [[list(f) for f in self.failed[k][0]], self.failed[k][1]] for k in newest}}
        atomic_write_text(Path(out) / STATE_NAME, json.dumps(payload, indent=1, sort_keys=True) + "\n")

    def is_failed(self, cycle: str, signature: Signature) -> bool:
        """Whether `cycle` was refused with exactly these files (a changed file gives it another try)."""
        known = self.failed.get(cycle)
        return known is not None and [tuple(f) for f in known[0]] == [tuple(f) for f in signature]
