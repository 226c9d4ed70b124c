"""`train.py` in this process, with its file writes made observable, for the kill-and-resume suite.

    REDHEART_KILL_EVENTS=/tmp/events.log [REDHEART_KILL_PAUSE=write:*.safetensors:3] \
        python tests/kill_child.py <train.py overrides>

Why a wrapper: a kill "during a checkpoint write" must land while a temp file exists and before its
rename, a window of milliseconds. Here every `redheart.io.atomic_write_with` call (every file the run
writes, Lightning checkpoints included through AtomicCheckpointIO) and the relink of `last.ckpt` are
reported as lines of REDHEART_KILL_EVENTS (`<monotonic time> <event> <file name> [detail]`):

    wrote <name>                    the file was renamed into place
    linked <name>                   os.symlink made <name> (Lightning's last.ckpt, the end of an epoch)
    epoch_end <name> <E>            epoch_history.json now ends with epoch E
    paused <name> <kind> <detail>   the REDHEART_KILL_PAUSE point: the process sleeps until it is killed

REDHEART_KILL_PAUSE=<kind>:<file name pattern>:<n> pauses at the n-th matching event of this process:
`write` after the whole content is in the temp file (`detail` is its path), before fsync and rename;
`link` in os.symlink, after Lightning has removed `last.ckpt` (and the previous resume checkpoint) and
before it links the new one. The parent then SIGKILLs the process. Nothing else changes: no pause
configured, the run is train.py's, byte for byte.
"""

from __future__ import annotations

import fnmatch
import json
import os
import runpy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVENTS, PAUSE = "REDHEART_KILL_EVENTS", "REDHEART_KILL_PAUSE"


def main(argv: list[str]) -> None:
    events = Path(os.environ[EVENTS])
    spec = os.environ.get(PAUSE)
    kind, pattern, nth = "", "", 0
    if spec:
        kind, rest = spec.split(":", 1)
        pattern, nth_text = rest.rsplit(":", 1)
        nth = int(nth_text)
    seen = 0

    def report(line: str) -> None:
        with open(events, "a", encoding="utf-8") as fh:
            fh.write(f"{time.monotonic():.6f} {line}\n")

    def maybe_pause(event: str, name: str, detail: str) -> None:
        nonlocal seen
        if spec and event == kind and fnmatch.fnmatch(name, pattern):
            seen += 1
            if seen == nth:
                report(f"paused {name} {event} {detail}")
                time.sleep(120)  # the parent SIGKILLs us here
                os._exit(86)  # no parent came: do not linger

    import redheart.io as rio  # patched before train.py's imports copy the name (from redheart.io import ...)

    real_write = rio.atomic_write_with

    def atomic_write_with(path, write):
        name = Path(path).name

        def write_then_pause(tmp: Path) -> None:
            write(tmp)
            maybe_pause("write", name, str(tmp))  # content complete in the temp file, not yet renamed

        out = real_write(path, write_then_pause)
        report(f"wrote {name}")
        if name == "epoch_history.json":
            epochs = json.loads(Path(path).read_text(encoding="utf-8"))["epochs"]
            report(f"epoch_end {name} {epochs[-1]['epoch'] if epochs else 0}")
        return out

    rio.atomic_write_with = atomic_write_with
    real_symlink = os.symlink

    def symlink(src, dst, *args, **kwargs):
        maybe_pause("link", Path(dst).name, str(src))  # last.ckpt is gone here; the new target is written
        real_symlink(src, dst, *args, **kwargs)
        report(f"linked {Path(dst).name}")

    os.symlink = symlink
    sys.path.insert(0, str(ROOT))  # `callbacks`, as `python train.py` sees it
    sys.argv = [str(ROOT / "train.py"), *argv]
    runpy.run_path(str(ROOT / "train.py"), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
