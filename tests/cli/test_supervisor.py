"""The supervisor of `assetrag up` with real child processes and a clock of its own."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from cli.stack import GiveUp, Stack, Supervisor


def test_a_child_that_dies_is_restarted_after_a_backoff(tmp_path: Path) -> None:
    said: list[str] = []
    stack = Stack(log_dir=tmp_path)
    stack.spawn("sleeper", ["sleep", "60"])
    supervisor = Supervisor(stack, said.append)
    try:
        first = stack.procs["sleeper"]
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        supervisor.check(now=100.0)
        assert stack.procs["sleeper"] is first, "not before its backoff"
        assert "sleeper exited with code -9; restarting in 1s" in said[-1]
        supervisor.check(now=101.0)
        assert stack.procs["sleeper"] is not first and stack.procs["sleeper"].poll() is None
        assert said[-1].startswith("[yellow]restarted sleeper")
    finally:
        stack.stop()


def test_a_child_that_keeps_dying_stops_the_stack_with_a_message(tmp_path: Path) -> None:
    said: list[str] = []
    stack = Stack(log_dir=tmp_path)
    stack.spawn("broken", ["sh", "-c", "exit 3"])
    supervisor = Supervisor(stack, said.append)
    now = 0.0
    try:
        with pytest.raises(GiveUp) as gave_up:
            for _ in range(60):  # a second at a time: five exits in ~20 s
                stack.procs["broken"].wait(10)
                supervisor.check(now)
                now += 1.0
        assert "broken exited 5 times within 60s, last with code 3" in str(gave_up.value)
        assert str(tmp_path / "broken") in str(gave_up.value)
        delays = [line for line in said if "restarting in" in line]
        assert [d.split("restarting in ")[1] for d in delays] == [
            "1s[/]",
            "2s[/]",
            "4s[/]",
            "8s[/]",
        ]
    finally:
        stack.stop()
