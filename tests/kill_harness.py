"""Kill and resume: SIGKILL a real `train.py` process at planned moments, resume it, check every file.

Shared by tests/test_kill_resume.py (CI) and bench/kill_resume.py (timings, other seeds).

A tiny deterministic run (tests/test_resume.py's RUN: dropout, deterministic, 6 train + 2 val batches)
of EPOCHS epochs with a modular and a resume checkpoint after every epoch runs as a subprocess
(tests/kill_child.py, which reports each file write). It is SIGKILLed at each moment of a plan and
resumed with `ckpt_path=last` until it finishes; an uninterrupted run is the reference. Kinds of moment:

    time      a random time in a given epoch (after the event that starts it in this process)
    startup   a random time before training starts (imports, data, restoring the checkpoint)
    write     inside a write of a file whose name matches a pattern: the whole content in the temp
              file, not yet renamed (the temp file is seen to exist when the kill lands)
    link      after Lightning removed last.ckpt and the previous resume checkpoint, before it links
              last.ckpt to the new one

After each kill, before resuming: every file under a final name parses or loads (json, jsonl,
safetensors, ckpt with weights_only), the manifest lists no temp file, its entries up to the newest
whole checkpoint hash to their sha256, and that checkpoint is at most one epoch behind the furthest
epoch finished; the next process must go on from exactly there (its first finished epoch says
where). At the end: the run finishes, raw and EMA weights and every modular checkpoint are equal
(torch.equal) to the uninterrupted run's, the manifest lists each epoch once and every file
verifies, epoch_history.json holds each epoch once with the reference losses. The parent only
looks at files: the resuming, including any repair, is the child's.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from redheart.io import read_jsonl, sha256_file
from tests.test_resume import RUN as RESUME_RUN

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "kill_child.py"
EPOCHS = 8
RUN = (*(o for o in RESUME_RUN if not o.startswith("trainer.max_epochs=")), f"trainer.max_epochs={EPOCHS}",
       # the resume checkpoint follows the modular cadence (conf/callbacks/default.yaml), so every epoch
       # has one and a kill costs at most the epoch in progress
       "callbacks.modular_checkpoint.every_n_epochs=1")
STEPS_PER_EPOCH = int(next(o for o in RUN if "limit_train_batches=" in o).split("=")[1])
ATTEMPT_TIMEOUT_S = 300


@dataclass
class Moment:
    kind: str                 # time | startup | write | link
    epoch: int | None = None  # the epoch to kill in (moved up to the first one this process trains)
    pattern: str = ""         # file name pattern of a write or link

    def __str__(self) -> str:
        where = f" {self.pattern}" if self.pattern else ""
        return f"{self.kind}{where}" + (f" @epoch {self.epoch}" if self.epoch else "")


@dataclass
class Attempt:
    index: int
    resumed_from: int                   # completed epochs it resumed from (0: from the start)
    moment: Moment | None
    rc: int | None = None
    wall_s: float = 0.0
    start: float = 0.0                  # monotonic launch time
    killed_at_s: float | None = None    # since launch
    pause: str | None = None            # the `paused` event it was killed in
    temp_file_existed: bool | None = None
    epoch_ends: list[int] = field(default_factory=list)
    events: list[tuple[float, str, str, str]] = field(default_factory=list)


def read_events(path: Path) -> list[tuple[float, str, str, str]]:
    """(monotonic time, event, file name, detail) of every complete line of a child's event file."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.endswith("\n"):
            t, event, name, *rest = line.rstrip("\n").split(" ", 3)
            out.append((float(t), event, name, rest[0] if rest else ""))
    return out


class KillResume:
    """One reference run and one killed-and-resumed run under `workdir`, with every check's findings."""

    def __init__(self, workdir: Path, seed: int = 0):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(seed)
        self.attempts: list[Attempt] = []
        self.problems: list[str] = []
        self.kills: list[dict[str, Any]] = []
        self.reference: Attempt | None = None

    def run_dir(self, name: str) -> Path:
        return self.workdir / "outputs" / "train" / "runs" / name

    def command(self, name: str, resume: bool) -> list[str]:
        return [sys.executable, str(CHILD), *RUN, f"run_name={name}",
                f"paths.log_dir={self.workdir / 'outputs'}", f"data.cache_dir={self.workdir / 'cache'}",
                *(["ckpt_path=last"] if resume else [])]

    # ---- running -------------------------------------------------------------------------------

    def launch(self, name: str, attempt: Attempt, resume: bool, pause: str | None,
               kill_after: tuple[str, float] | None) -> Attempt:
        """Run one process; SIGKILL it at its pause point, or `delay` s after the `anchor` event."""
        events_path = self.workdir / f"{name}_{attempt.index:02d}.events"
        # one intra-op thread: on 2 shared cores, two torch threads waiting on each other make a tiny
        # epoch take 1-10 s; every process here (reference included) runs alike, so equality is unaffected
        env = {"OMP_NUM_THREADS": "1", **os.environ, "REDHEART_KILL_EVENTS": str(events_path)}
        env.pop("REDHEART_KILL_PAUSE", None)
        if pause:
            env["REDHEART_KILL_PAUSE"] = pause
        with open(self.workdir / f"{name}_{attempt.index:02d}.out", "wb") as out:
            start = attempt.start = time.monotonic()
            proc = subprocess.Popen(self.command(name, resume), cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
            kill_time = start + kill_after[1] if kill_after and kill_after[0] == "launch" else None
            while proc.poll() is None:
                now = time.monotonic()
                events = read_events(events_path)
                paused = next((e for e in events if e[1] == "paused"), None)
                if kill_after and kill_time is None:
                    t0 = anchor_time(events, kill_after[0])
                    kill_time = None if t0 is None else t0 + kill_after[1]
                if paused or (kill_time is not None and now >= kill_time):
                    proc.kill()  # SIGKILL
                    attempt.killed_at_s = now - start
                    if paused:
                        attempt.pause = f"{paused[2]} ({paused[3].split(' ', 1)[0]})"
                        if paused[3].startswith("write "):
                            attempt.temp_file_existed = Path(paused[3].split(" ", 1)[1]).exists()
                    break
                if now - start > ATTEMPT_TIMEOUT_S:
                    proc.kill()
                    raise TimeoutError(f"{name} attempt {attempt.index} ran over {ATTEMPT_TIMEOUT_S} s")
                time.sleep(0.01)
            attempt.rc = proc.wait()
            attempt.wall_s = time.monotonic() - start
        attempt.events = read_events(events_path)
        attempt.epoch_ends = [int(e[3]) for e in attempt.events if e[1] == "epoch_end"]
        return attempt

    def run_reference(self) -> Attempt:
        ref = self.launch("straight", Attempt(0, 0, None), resume=False, pause=None, kill_after=None)
        if ref.rc != 0:
            raise RuntimeError(f"the uninterrupted run failed (rc {ref.rc}): {self.tail('straight', 0)}")
        self.reference = ref
        return ref

    def tail(self, name: str, index: int, chars: int = 3000) -> str:
        text = (self.workdir / f"{name}_{index:02d}.out").read_text(encoding="utf-8", errors="replace")
        return text[-chars:]

    # ---- what the reference run tells about timing and events per epoch -------------------------

    def per_epoch(self, kind: str, pattern: str) -> int:
        """How many `kind` events on files matching `pattern` one epoch has (the same in every epoch)."""
        event = {"write": "wrote", "link": "linked"}[kind]
        counts, current, started = [], 0, False
        for _, ev, name, _ in self.reference.events:
            started = started or (ev, name) == ("wrote", "run.json")  # data caches and reports come before
            if started and ev == event and fnmatch.fnmatch(name, pattern):
                current += 1
            if ev == "linked":  # Lightning relinks last.ckpt last thing in an epoch
                counts.append(current)
                current = 0
        if len(counts) != EPOCHS or len(set(counts)) != 1 or not counts[0]:
            raise ValueError(f"{kind}:{pattern}: events per epoch in the reference run are {counts}, not one "
                             f"constant for {EPOCHS} epochs")
        return counts[0]

    def timing(self) -> dict[str, float]:
        """Reference run: startup_s (launch to run.json written), first_epoch_s (run.json to the end of
        epoch 1: model, sanity check, epoch), epoch_s (median time between later epoch ends)."""
        events = self.reference.events
        ends = [t for t, ev, _, _ in events if ev == "epoch_end"]
        run_json = anchor_time(events, "wrote run.json")
        return {"startup_s": run_json - self.reference.start, "first_epoch_s": ends[0] - run_json,
                "epoch_s": statistics.median(b - a for a, b in itertools.pairwise(ends))}

    # ---- killing ---------------------------------------------------------------------------------

    def plan_kill(self, moment: Moment,
                  resumed_from: int) -> tuple[str | None, tuple[str, float] | None, int | None]:
        """(pause spec, (anchor event, delay), the epoch it is aimed at) for one moment of the plan."""
        timing = self.timing()
        epoch = None if moment.epoch is None else max(moment.epoch, resumed_from + 1)
        if moment.kind == "startup":
            return None, ("launch", self.rng.uniform(0.2, 1.0) * timing["startup_s"]), None
        if moment.kind == "time":  # the first epoch of a process comes after building and restoring
            first = epoch == resumed_from + 1
            anchor = "wrote run.json" if first else f"epoch_end {epoch - 1}"
            span = timing["first_epoch_s"] if first else timing["epoch_s"]
            return None, (anchor, self.rng.uniform(0.0, 1.0) * span), epoch
        if epoch is None:  # a write that happens once per run (metrics.json at the end)
            return f"{moment.kind}:{moment.pattern}:1", None, None
        per_epoch = self.per_epoch(moment.kind, moment.pattern)
        nth = (epoch - resumed_from - 1) * per_epoch + self.rng.randint(1, per_epoch)
        return f"{moment.kind}:{moment.pattern}:{nth}", None, epoch

    def run_killed(self, plan: list[Moment], name: str = "killed") -> None:
        """Start the run, SIGKILL it at each moment of `plan` in turn, resume until it finishes."""
        if self.reference is None:
            self.run_reference()
        resumed_from, furthest = 0, 0
        for i, moment in enumerate([*plan, None]):
            attempt = Attempt(i, resumed_from, moment)
            pause, kill_after, epoch = self.plan_kill(moment, resumed_from) if moment else (None, None, None)
            self.launch(name, attempt, resume=i > 0, pause=pause, kill_after=kill_after)
            self.attempts.append(attempt)
            if attempt.epoch_ends:  # what the process did, as opposed to what the files allow
                if self.kills:  # the work the previous kill really cost
                    kill = self.kills[-1]
                    kill["next_process_resumed_from"] = attempt.epoch_ends[0] - 1
                    kill["epochs_lost"] = kill["epochs_finished"] - kill["next_process_resumed_from"]
                if attempt.epoch_ends[0] != resumed_from + 1:
                    self.problems.append(f"attempt {i}: the newest complete checkpoint holds epoch "
                                         f"{resumed_from}, but the process went on from epoch "
                                         f"{attempt.epoch_ends[0] - 1}")
            furthest = max([furthest, *attempt.epoch_ends])
            if moment is None:
                if attempt.rc != 0:
                    self.problems.append(f"the final resume failed (rc {attempt.rc}): {self.tail(name, i)}")
                break
            if attempt.rc != -9:
                self.problems.append(f"attempt {i} ({moment}) was not killed: rc {attempt.rc}; "
                                     f"{self.tail(name, i, 1500)}")
            if attempt.temp_file_existed is False:
                self.problems.append(f"attempt {i}: killed in {attempt.pause}, but its temp file was gone")
            run = self.run_dir(name)
            last = run / "checkpoints" / "last.ckpt"
            last_state = "ok" if last.exists() else "dangling" if last.is_symlink() else "missing"
            resumed_from = self.newest_checkpoint(run)  # the parent only looks: the child does the resuming
            history = self.history_epochs(run)
            if history and history[-1] != furthest:
                self.problems.append(f"after kill {i}: epoch_history.json ends at {history[-1]}, the process "
                                     f"reported epoch {furthest}")
            lost = furthest - resumed_from  # until the next process shows where it went on from
            if lost > 1:
                self.problems.append(f"kill {i} ({moment}): epochs finished {furthest}, the newest complete "
                                     f"checkpoint holds {resumed_from}: {lost} epochs lost")
            temps = self.check_files(run, resumed_from, f"after kill {i} ({moment})")
            self.kills.append({"attempt": i, "moment": str(moment), "aimed_at_epoch": epoch,
                               "killed_at_s": attempt.killed_at_s, "paused_in": attempt.pause,
                               "temp_file_existed": attempt.temp_file_existed, "epochs_finished": furthest,
                               # "dangling"/"missing": what last.ckpt alone would have restarted from scratch
                               "last_ckpt": last_state, "resumes_from_epoch": resumed_from,
                               "next_process_resumed_from": None, "epochs_lost": lost,
                               "temp_files_left": temps})

    def newest_checkpoint(self, run: Path) -> int:
        """Completed epochs of the most advanced whole checkpoint in the run (0: none): where a resume must
        go on from. Every *.ckpt must load (a half-written one under that name would be a finding)."""
        best = 0
        for path in (run / "checkpoints").glob("*.ckpt") if (run / "checkpoints").is_dir() else ():
            if not path.is_file():
                continue  # last.ckpt dangling mid-relink
            try:
                ckpt = torch.load(path, map_location="cpu")
            except Exception:  # check_files reports it
                continue
            if ckpt["global_step"] != (ckpt["epoch"] + 1) * STEPS_PER_EPOCH:
                self.problems.append(f"{path.name}: global_step {ckpt['global_step']} is not the end of "
                                     f"epoch index {ckpt['epoch']}")
            best = max(best, ckpt["epoch"] + 1)  # Lightning stores the 0-based index of the epoch that ended
        return best

    @staticmethod
    def history_epochs(run: Path) -> list[int]:
        path = run / "epoch_history.json"
        return [r["epoch"] for r in json.loads(path.read_text())["epochs"]] if path.exists() else []

    # ---- file checks -----------------------------------------------------------------------------

    def check_files(self, run: Path, verified_up_to: int, when: str) -> list[str]:
        """Every file under a final name loads; the manifest is sound. Returns the temp files left over."""
        temps = []
        for path in sorted(run.rglob("*")):
            rel = path.relative_to(run)
            if any(part.startswith(".") for part in rel.parts):  # temp files; Hydra's .hydra/ (not ours)
                if path.name.endswith(".tmp"):
                    temps.append(str(rel))
                continue
            if path.is_symlink() and not path.exists():
                continue  # last.ckpt mid-relink: ckpt_path=last then takes the newest resume checkpoint
            if path.is_dir():
                continue
            try:
                if path.suffix == ".json":
                    json.loads(path.read_text(encoding="utf-8"))
                elif path.suffix == ".jsonl":
                    read_jsonl(path)
                elif path.suffix == ".safetensors":
                    load_file(path)
                elif path.suffix == ".ckpt":
                    torch.load(path, map_location="cpu")
            except Exception as err:  # any failure to load is the finding
                self.problems.append(f"{when}: {rel} does not load: {type(err).__name__}: {err}")
        manifest_path = run / "modular" / "manifest.json"
        if manifest_path.exists():
            self.problems.extend(f"{when}: {p}" for p in verify_manifest(manifest_path, verified_up_to))
        return temps

    # ---- the end state ---------------------------------------------------------------------------

    def check_final(self, name: str = "killed") -> None:
        straight, killed = self.run_dir("straight"), self.run_dir(name)
        raw_a, ema_a = final_state(straight)
        raw_b, ema_b = final_state(killed)
        if raw_a.keys() != raw_b.keys() or not all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a):
            self.problems.append("final raw weights differ from the uninterrupted run's")
        if ema_a.keys() != ema_b.keys() or not all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a):
            self.problems.append("final EMA weights differ from the uninterrupted run's")
        manifest = json.loads((killed / "modular" / "manifest.json").read_text())
        epochs = [c["epoch"] for c in manifest["checkpoints"]]
        if epochs != list(range(1, EPOCHS + 1)):
            self.problems.append(f"the manifest lists epochs {epochs}, not each of 1..{EPOCHS} once")
        manifest_problems = verify_manifest(killed / "modular" / "manifest.json", EPOCHS)
        self.problems.extend(f"final: {p}" for p in manifest_problems)
        modular_a, modular_b = modular_tensors(straight), modular_tensors(killed)
        for epoch, tensors in modular_a.items():
            other = modular_b.get(epoch, {})
            if tensors.keys() != other.keys() or not all(torch.equal(tensors[k], other[k]) for k in tensors):
                self.problems.append(f"modular checkpoint of epoch {epoch} differs from the reference run's")
        history_a = json.loads((straight / "epoch_history.json").read_text())["epochs"]
        history_b = json.loads((killed / "epoch_history.json").read_text())["epochs"]
        if [r["epoch"] for r in history_b] != list(range(1, EPOCHS + 1)):
            self.problems.append(f"epoch_history.json lists epochs {[r['epoch'] for r in history_b]}")
        for a, b in zip(history_a, history_b, strict=True) if len(history_a) == len(history_b) else ():
            if not math.isclose(a["train_loss"], b["train_loss"], rel_tol=1e-6):
                self.problems.append(f"epoch {a['epoch']}: train loss {b['train_loss']} != {a['train_loss']}")
        self.check_files(killed, EPOCHS, "final")

    def summary(self) -> dict[str, Any]:
        timing = self.timing()
        return {
            "epochs": EPOCHS, "run_overrides": list(RUN), "kills": self.kills, "kill_count": len(self.kills),
            "attempts": [{"index": a.index, "moment": str(a.moment) if a.moment else "final resume",
                          "resumed_from": a.resumed_from, "rc": a.rc, "wall_s": round(a.wall_s, 2),
                          "epochs_finished": a.epoch_ends} for a in self.attempts],
            "reference_wall_s": round(self.reference.wall_s, 2),
            **{f"reference_{k}": round(v, 3) for k, v in timing.items()},
            "killed_run_wall_s": round(sum(a.wall_s for a in self.attempts), 2),
            "problems": self.problems,
        }


WRITES = ["*.safetensors", "metrics_epoch_*.json", "manifest.json", "epoch_history.json", "resume-*.ckpt"]


def plan(seed: int = 0, time_kills: int = 4) -> list[Moment]:
    """8 + time_kills moments in seeded random epochs, in epoch order: inside each per-epoch write and
    the relink, once at start-up, `time_kills` random times, and inside the final metrics.json write."""
    rng = random.Random(seed)
    keyed = [(rng.randint(1, EPOCHS), Moment("write", None, p)) for p in WRITES]
    keyed.append((rng.randint(3, EPOCHS), Moment("link", None, "last.ckpt")))  # >= 3: an older ckpt is gone
    keyed += [(rng.randint(1, EPOCHS - 1), Moment("time")) for _ in range(time_kills)]  # not the last epoch
    keyed.append((rng.uniform(1.5, EPOCHS), Moment("startup")))
    keyed.sort(key=lambda km: km[0])
    if keyed[0][1].kind == "startup":  # the first process must get as far as run.json, or there is no run
        keyed[0], keyed[1] = keyed[1], keyed[0]
    for key, moment in keyed:
        if moment.kind != "startup":
            moment.epoch = int(key)
    return [*(m for _, m in keyed), Moment("write", None, "metrics.json")]  # after training, before exit


def anchor_time(events: list[tuple[float, str, str, str]], anchor: str) -> float | None:
    """When `anchor` happened: "wrote <file name>" or "epoch_end <E>"; None while it has not."""
    event, arg = anchor.split(" ", 1)
    for t, ev, name, detail in events:
        if ev == event and (name if event == "wrote" else detail) == arg:
            return t
    return None


def verify_manifest(path: Path, verified_up_to: int) -> list[str]:
    """Listed files exist under final names; up to `verified_up_to`, their bytes hash to the manifest's.

    A later epoch is one a resumed run is redoing: its files are rewritten before the manifest is, so
    only their completeness (checked by loading) is required until its resume checkpoint exists.
    """
    problems = []
    modular = path.parent
    for entry in json.loads(path.read_text(encoding="utf-8"))["checkpoints"]:
        listed = [(info["path"], info["sha256"]) for info in entry["files"].values()]
        listed.append((entry["metrics"], entry["metrics_sha256"]))
        for rel, sha in listed:
            file = modular / rel
            if any(part.startswith(".") or part.endswith(".tmp") for part in Path(rel).parts):
                problems.append(f"manifest lists a temp file {rel}")
            elif not file.is_file():
                problems.append(f"manifest lists {rel}, which does not exist")
            elif entry["epoch"] <= verified_up_to and sha256_file(file) != sha:
                problems.append(f"{rel}: sha256 differs from the manifest's (epoch {entry['epoch']})")
    return problems


def final_state(run: Path) -> tuple[dict, dict]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu")
    return ckpt["current_model_state"], ckpt["state_dict"]  # raw, EMA


def modular_tensors(run: Path) -> dict[int, dict[str, torch.Tensor]]:
    manifest = json.loads((run / "modular" / "manifest.json").read_text())
    out: dict[int, dict[str, torch.Tensor]] = {}
    for entry in manifest["checkpoints"]:
        out[entry["epoch"]] = {}
        for info in entry["files"].values():
            out[entry["epoch"]] |= load_file(run / "modular" / info["path"])
    return out
