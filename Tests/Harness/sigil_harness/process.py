"""Processes: running the real `sigil` binary, waiting for conditions, free ports, one-line failures."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


from .ledger import LEDGER, _is_sigil

REPO_ROOT = Path(__file__).resolve().parents[3]
CHECK_SVID = REPO_ROOT / "Tests" / "Integration" / "conformance" / "check-svid.py"
# One line on stderr: `Error: <stable_code>: <message>`.
ERROR_LINE = re.compile(r"^Error: (?P<code>[a-z][a-z0-9_]*): \S")
CRASH_MARKERS = ("Traceback", "Fatal error", "Stack dump", "Backtrace", "💣", "Current stack trace", "SIGSEGV")


@dataclass
class Result:
    """A finished command, printable in full for assertion messages."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n"
            f"exit {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}"
            f"--- stderr ---\n{self.stderr}"
        )


def describe_process(command: list, process: subprocess.Popen | None, sections: list[tuple[str, str]]) -> str:
    """For failure messages: the command, whether it runs or how it exited, then each (title, text) section."""
    status = process.poll() if process else None
    head = f"$ {' '.join(str(c) for c in command)}\n{'running' if status is None else f'exit {status}'}\n"
    return head + "".join(f"--- {title} ---\n{text}" for title, text in sections)


def stop_process(process: subprocess.Popen, timeout: float = 15) -> int:
    """SIGTERM, wait up to `timeout` s, then SIGKILL. Returns the exit status (negative: killed by a signal)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
    return process.returncode


def run(
    args: list[str], *, timeout: float = 60, umask: int | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Result:
    """Runs a command to completion and captures its output as text (in `env`, default this process's
    environment). A `sigil` command's output, and the files it names, go to the secrets ledger."""
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    completed = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    if _is_sigil(args):
        LEDGER.sigil_command([str(a) for a in args], completed.stdout, completed.stderr, cwd)
    return Result([str(a) for a in args], completed.returncode, completed.stdout, completed.stderr)


class Sigil:
    """Runs the real `sigil` binary."""

    def __init__(self, binary: Path):
        self.binary = binary

    def run(self, *args, **kwargs) -> Result:
        return run([self.binary, *args], **kwargs)

    def ok(self, *args, **kwargs) -> Result:
        """Runs sigil and fails the test, showing everything it printed, unless it exits 0."""
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, f"sigil failed:\n{result}"
        return result


def assert_one_line_failure(result: Result) -> str:
    """Asserts what DESIGN.md wants of every failing command: non-zero exit, nothing on stdout,
    exactly one line on stderr starting `Error: `, and no crash or stack trace. Returns the line."""
    assert result.returncode != 0, f"expected a failure:\n{result}"
    assert result.stdout == "", f"a failing command printed on stdout:\n{result}"
    for marker in CRASH_MARKERS:
        assert marker not in result.stderr, f"crash marker {marker!r} on stderr:\n{result}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}:\n{result}"
    assert lines[0].startswith("Error: "), f"stderr does not start with 'Error: ':\n{result}"
    return lines[0]


def assert_clean_failure(result: Result, code: str | set[str] | None = None) -> str:
    """assert_one_line_failure, and the line is `Error: <stable_code>: <message>` with the code
    expected (any code if None). Returns the code."""
    line = assert_one_line_failure(result)
    match = ERROR_LINE.match(line)
    assert match, f"stderr is not 'Error: <code>: <message>':\n{result}"
    if code is not None:
        wanted = {code} if isinstance(code, str) else code
        assert match["code"] in wanted, f"expected code {sorted(wanted)}, got {match['code']}:\n{result}"
    return match["code"]


def wait_until(
    condition: Callable[[], object], timeout: float, what: str = "condition", interval: float = 0.1,
    describe: Callable[[], str] | None = None,
):
    """Polls `condition` until it returns something truthy (returned) or `timeout` seconds pass (AssertionError
    naming `what`, plus describe() if given). Between polls it waits on an Event, never longer than `interval`."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = condition()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            extra = f"\n{describe()}" if describe else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        pause.wait(min(interval, remaining))


class _LineReader:
    """Collects the lines of one pipe in a thread; waiters are woken by a condition variable."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self.closed = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._condition:
                self.lines.append(line.rstrip("\n"))
                self._condition.notify_all()
        with self._condition:
            self.closed = True
            self._condition.notify_all()

    def wait_for(self, predicate: Callable[[str], object], timeout: float):
        """The first value predicate(line) that is truthy, or None when the pipe closed or time ran out."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._condition:
            while True:
                for line in self.lines[seen:]:
                    value = predicate(line)
                    if value:
                        return value
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if self.closed or remaining <= 0:
                    return None
                self._condition.wait(remaining)

    def text(self) -> str:
        with self._condition:
            return "".join(line + "\n" for line in self.lines)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without SIGIL_* variables (only the flags a test gives configure sigil), plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SIGIL_")}
    env.update(extra or {})
    return env
