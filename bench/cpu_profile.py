"""Where a load's time goes, per process: CPU share from /proc, and (with py-spy on the PATH
or in the venv) sampled stacks of the Python processes, summarised as the functions that
held the CPU longest, by self time and including what they called; and a worker's stage
histograms read off its /metrics before and after. (Not `profile.py`: a script run from
bench/ would shadow the standard library's module.)

    with ProcessProfile({"api": pid, ...}, seconds, out_dir, py_spy=True) as profile:
        run_the_load()
    print(profile.table())
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import TracebackType

import httpx
from prometheus_client.parser import text_string_to_metric_families

Stages = dict[str, tuple[float, float]]  # stage -> (seconds summed, observations)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children's, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def py_spy_path() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class ProcessProfile:
    """CPU seconds per named process over a with block; py-spy samples of the Python ones
    (raw collapsed stacks of the CPU-busy threads, with their names, into `out_dir/<name>.txt`)."""

    def __init__(
        self,
        pids: dict[str, int],
        seconds: float,
        out_dir: Path,
        py_spy: dict[str, int] | None = None,
        rate: int = 100,
    ) -> None:
        self.pids = pids
        self.seconds = seconds
        self.out_dir = out_dir
        self.sampled = py_spy or {}
        self.rate = rate
        self.cpu: dict[str, float] = {}
        self.stages: dict[str, float] = {}  # stage -> seconds per search, when read
        self.batch_rows: dict[str, float] = {}  # stage -> mean rows per shared call
        self.wall = 0.0
        self._before: dict[str, float] = {}
        self._started = 0.0
        self._spies: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> ProcessProfile:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        spy = py_spy_path()
        if spy is not None:
            for name, pid in self.sampled.items():
                argv = [spy, "record", "-p", str(pid), "-d", str(int(self.seconds)), "-r"]
                argv += [str(self.rate), "-f", "raw", "-t", "--nonblocking"]
                argv += ["-o", str(self.out_dir / f"{name}.txt")]
                self._spies.append(
                    subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.wall = time.perf_counter() - self._started
        self.cpu = {n: cpu_seconds(p) - self._before[n] for n, p in self.pids.items()}
        for spy in self._spies:
            try:
                spy.wait(self.seconds + 30)
            except subprocess.TimeoutExpired:
                spy.kill()

    def table(self) -> str:
        """CPU share of each process (1.00 = one core busy throughout)."""
        lines = ["| process | CPU s | cores busy |", "|---|---:|---:|"]
        for name, used in sorted(self.cpu.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {name} | {used:.1f} | {used / self.wall:.2f} |")
        total = sum(self.cpu.values())
        lines.append(f"| all | {total:.1f} | {total / self.wall:.2f} |")
        return "\n".join(lines)

    def hot(self, name: str, top: int = 12) -> str:
        """The sampled process's functions by share of samples: self (the leaf frame) and
        total (anywhere on the stack), idle frames (waiting) counted apart."""
        path = self.out_dir / f"{name}.txt"
        if not path.exists():
            return f"{name}: no py-spy samples"
        leaf: Counter[str] = Counter()
        anywhere: Counter[str] = Counter()
        threads: Counter[str] = Counter()
        total = 0
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            frames = stack.split(";")
            total += count
            threads[frames[0]] += count
            leaf[short(frames[-1])] += count
            for frame in set(map(short, frames[1:])):
                anywhere[frame] += count
        if not total:
            return f"{name}: no samples"
        out = [f"{name}: {total} samples; by thread:"]
        out += [f"  {n / total:6.1%}  {t}" for t, n in threads.most_common(8)]
        out.append("  self:")
        out += [f"  {n / total:6.1%}  {f}" for f, n in leaf.most_common(top)]
        out.append("  total:")
        out += [f"  {n / total:6.1%}  {f}" for f, n in anywhere.most_common(top * 2)]
        return "\n".join(out)


def short(frame: str) -> str:
    """`fn (path/to/module.py:12)` -> `fn (module.py)`: lines merged, paths shortened."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1].rstrip(")")
    return f"{name} ({file})" if file else name


def stage_totals(metrics_url: str, histogram: str) -> Stages:
    """A histogram's sum and count per `stage` label, as a worker's /metrics says now."""
    text = httpx.get(metrics_url, timeout=10).text
    totals: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != histogram:
            continue
        for sample in family.samples:
            stage = sample.labels.get("stage", "")
            entry = totals.setdefault(stage, [0.0, 0.0])
            if sample.name.endswith("_sum"):
                entry[0] = sample.value
            elif sample.name.endswith("_count"):
                entry[1] = sample.value
    return {stage: (total, count) for stage, (total, count) in totals.items()}


def stage_means(before: Stages, after: Stages, jobs: float) -> dict[str, float]:
    """Seconds per job in each stage between two readings (a stage observed once per job)."""
    out: dict[str, float] = {}
    for stage, (total, _) in after.items():
        out[stage] = (total - before.get(stage, (0.0, 0.0))[0]) / max(jobs, 1.0)
    return out
