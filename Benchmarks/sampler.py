"""Samples /proc for the labelled processes every 0.2 s until killed: one JSON line per sample with the
wall time, each process's CPU ticks (utime+stime), VmRSS and VmHWM (KiB), and the machine's busy
and total ticks from /proc/stat.

Usage: sampler.py OUT.jsonl LABEL=PID...
"""
import json
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Tests" / "Harness"))
from sigil_harness.procfs import machine_ticks, process_figures  # noqa: E402

out, procs = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with open(out, "a", buffering=1) as f:
    while True:
        sample = {"t": time.time(), "cpu": list(machine_ticks())}
        for label, pid in procs.items():
            figures = process_figures(int(pid))
            sample[label] = list(figures) if figures else None
        f.write(json.dumps(sample) + "\n")
        time.sleep(0.2)
