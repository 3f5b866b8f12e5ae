"""The demo's second lane: steps that need only the world run in a second process.

``surgkit demo`` has two independent chains after the world is drawn (synth, data, metrics):
video -> prep -> skill (the SurgVISTA encoder feeds the skill features) and grounding -> reasoning
(the grounding CLIP is the reasoning model's vision tower). Run one after the other, one core idles
through most of the second chain (the reasoning step is single-threaded: its tiny matrices are
slower on two threads). With ``parallel`` (the default on a machine with two or more CPUs) the
steps of :data:`SECOND_LANE` run in a child process on :data:`SECOND_LANE_THREADS` torch thread
beside the first lane; the report keeps the usual step order and ``results.json`` records the
schedule. The second lane is the longer chain, so the main lane's processes step back
(:class:`MainLanePriority`, ``nice`` + :data:`MAIN_LANE_NICE`) while it runs.

The child is ``python -m surgkit.demo_lanes REQUEST``: it reads the request (steps, the context
after the world steps, the main process's identity), dies with the main process
(:func:`surgkit.utils.workers.init_worker`), writes its terminal output to ``logs/<lane>.log`` in
the working folder and its sections to a JSON file that the main process reads back. Each step
still measures its own wall and CPU seconds; the main process's step CPU seconds leave the child
out, so per-step CPU seconds still add up to the total. Results do not depend on the schedule:
every step seeds its own randomness, and the lane's steps run on :data:`SECOND_LANE_THREADS`
in either schedule (:func:`surgkit.demo.run_step`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from surgkit.errors import SurgkitError

WORLD_STEPS = ("synth", "data", "metrics")  # everything else needs their output
SECOND_LANE = ("grounding", "reasoning")
SECOND_LANE_THREADS = 1
# The second lane is the longer chain (grounding + reasoning on one thread); while it runs, the main
# lane's processes step back by this many nice levels so that it keeps a whole core (the numbers do not
# depend on it; only who waits).
MAIN_LANE_NICE = 10
LANE_FOLDER = ".demo-lane"  # request and result files of the child, inside the working folder


def default_parallel() -> bool:
    """Two lanes when the machine has at least two CPUs."""
    return (os.cpu_count() or 1) >= 2


def split_lanes(specs: tuple[str, ...], parallel: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(main lane, second lane) of the chosen steps; the second is empty when running sequentially.

    The second lane is used only when both lanes have model steps to run: a lone chain gains nothing
    from a second process.
    """
    from surgkit.demo import step_name

    second = tuple(s for s in specs if step_name(s) in SECOND_LANE) if parallel else ()
    main = tuple(s for s in specs if s not in second)
    if not second or all(step_name(s) in WORLD_STEPS for s in main):
        return tuple(specs), ()
    return main, second


class MainLanePriority:
    """Lower the priority (``nice``) of this process and its descendants, the second lane excepted.

    CPU time then goes to the second lane first: on 2 cores it keeps one core whole while the main lane's
    worker processes share the other. Processes started later inherit the lower priority from their
    parent (the fork server included). ``restore`` puts back the old values where the OS allows it
    (raising priority again needs privileges; without them the demo's processes stay lowered, which
    changes nothing but their share of the CPU).
    """

    def __init__(
        self, lane_pid: int | None, increment: int = MAIN_LANE_NICE, root: int | None = None
    ) -> None:
        self.lane_pid, self.increment = lane_pid, increment
        self.root = os.getpid() if root is None else root
        self.before: dict[int, int] = {}

    def _pids(self) -> list[int]:
        from surgkit.utils.cputime import descendant_pids

        return [self.root, *descendant_pids(self.root, exclude=(self.lane_pid,) if self.lane_pid else ())]

    def lower(self) -> None:
        if not hasattr(os, "setpriority"):  # pragma: no cover - non-POSIX
            return
        for pid in self._pids():
            try:
                old = os.getpriority(os.PRIO_PROCESS, pid)
                os.setpriority(os.PRIO_PROCESS, pid, min(19, old + self.increment))
                self.before[pid] = old
            except OSError:  # a process that ended meanwhile, or one we may not touch
                continue

    def restore(self) -> None:
        for pid, old in self.before.items():
            try:
                os.setpriority(os.PRIO_PROCESS, pid, old)
            except OSError:  # ended, or lowering nice again needs privileges
                continue
        self.before = {}


def _section_to_json(section: Any) -> dict[str, Any]:
    return json.loads(_to_json(dataclasses.asdict(section)))


def _to_json(obj: Any) -> str:
    from surgkit.utils.io import to_json

    return to_json(obj, indent=None)


def section_from_json(d: dict[str, Any]) -> Any:
    """A :class:`surgkit.demo.DemoSection` back from its JSON form (figures as paths, tables as tuples)."""
    from surgkit.demo import DemoSection

    fields = {f.name for f in dataclasses.fields(DemoSection)}
    d = {k: v for k, v in d.items() if k in fields}
    d["figures"] = [(Path(p), str(c)) for p, c in d.get("figures", [])]
    d["tables"] = [(str(c), list(h), [list(r) for r in rows]) for c, h, rows in d.get("tables", [])]
    return DemoSection(**d)


class SecondLane:
    """The child process running :data:`SECOND_LANE`'s steps: ``start`` it (the main lane then steps back,
    :class:`MainLanePriority`), later ``collect`` its sections, and always ``stop``."""

    def __init__(self, specs: tuple[str, ...], ctx: Any, name: str = "grounding+reasoning") -> None:
        self.specs, self.ctx, self.name = specs, ctx, name
        self.folder = Path(ctx.workdir) / LANE_FOLDER
        self.log = Path(ctx.workdir) / "logs" / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.priority: MainLanePriority | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        from surgkit.utils.io import write_json
        from surgkit.utils.workers import main_identity

        self.folder.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        result = self.folder / "result.json"
        result.unlink(missing_ok=True)
        request = {
            "specs": list(self.specs),
            "ctx": {
                "workdir": str(self.ctx.workdir),
                "size": self.ctx.size,
                "seed": self.ctx.seed,
                "device": self.ctx.device,
                "artifacts": json.loads(_to_json(self.ctx.artifacts)),
            },
            "main": list(main_identity()),
            "threads": SECOND_LANE_THREADS,
            "result": str(result),
        }
        req_path = write_json(self.folder / "request.json", request)
        env = dict(
            os.environ, OMP_NUM_THREADS=str(SECOND_LANE_THREADS), MKL_NUM_THREADS=str(SECOND_LANE_THREADS)
        )
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "surgkit.demo_lanes", str(req_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.priority = MainLanePriority(self.proc.pid)
        self.priority.lower()

    def collect(self) -> tuple[list[Any], dict[str, Any]]:
        """Wait for the child; its sections (failed ones when it died) and the artifacts it published."""
        assert self.proc is not None, "start() first"
        code = self.proc.wait()
        result = self.folder / "result.json"
        if code == 0 and result.is_file():
            data = json.loads(result.read_text())
            return [section_from_json(s) for s in data["sections"]], data.get("artifacts", {})
        return [self._failed(spec, code) for spec in self.specs], {}

    def _failed(self, spec: str, code: int) -> Any:
        from surgkit.demo import DemoSection

        tail = self.log.read_text(errors="replace")[-3000:] if self.log.is_file() else ""
        return DemoSection(
            key=spec,
            title=f"{spec} (failed)",
            summary=f"the demo's second process (steps {', '.join(self.specs)}) exited with code {code} "
            f"before reporting; its log: {self.log}",
            status="failed",
            notes=[tail],
        )

    def stop(self) -> None:
        """Give the main lane its priority back; kill the child if it still runs (failure or interrupt)."""
        if self.priority is not None:
            self.priority.restore()
            self.priority = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _lane_main(request_path: str) -> int:
    """Entry point of the child: run the requested steps in order, write their sections as JSON."""
    request = json.loads(Path(request_path).read_text())
    from surgkit.utils.workers import init_worker

    init_worker(int(request["main"][0]), request["main"][1])
    import torch

    torch.set_num_threads(int(request["threads"]))
    from surgkit.demo import DemoContext, _quiet_third_party_progress, run_step, step_name
    from surgkit.utils.io import write_json
    from surgkit.utils.progress import console

    _quiet_third_party_progress()
    c = request["ctx"]
    ctx = DemoContext(workdir=Path(c["workdir"]), size=c["size"], seed=c["seed"], device=c["device"],
                      artifacts=dict(c["artifacts"]))  # fmt: skip
    sections = []
    for spec in request["specs"]:
        console.rule(f"[bold]{step_name(spec)}")
        sections.append(run_step(spec, ctx))
    write_json(request["result"], {"sections": [_section_to_json(s) for s in sections],
                                   "artifacts": json.loads(_to_json(ctx.artifacts))})  # fmt: skip
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through run_demo in a subprocess
    if len(sys.argv) != 2:
        raise SurgkitError("usage: python -m surgkit.demo_lanes REQUEST.json (started by surgkit demo)")
    sys.exit(_lane_main(sys.argv[1]))
