"""Figures of a process and of the machine from /proc. Standard library only: the benchmark's sampler runs it in
the plotting venv, without the test dependencies."""
from __future__ import annotations

from pathlib import Path


def process_figures(pid: int) -> tuple[int, int, int] | None:
    """(CPU ticks used, utime + stime; VmRSS KiB; VmHWM KiB) of `pid`, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = {}
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                status[key] = int(value.split()[0])
        return int(fields[11]) + int(fields[12]), status.get("VmRSS", 0), status.get("VmHWM", 0)
    except (OSError, IndexError, ValueError):
        return None


def rss_mib(pid: int) -> float:
    """VmRSS of a running process in MiB."""
    figures = process_figures(pid)
    if figures is None:
        raise RuntimeError(f"process {pid} is gone")
    return figures[1] / 1024


def status_mib(pid: int, *keys: str) -> dict[str, float]:
    """Fields of /proc/PID/status given in kB (VmRSS, RssAnon, RssFile, …) in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            out[key] = int(value.split()[0]) / 1024
    return out


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot, from the first line of /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)
