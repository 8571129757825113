"""Runs the service's processes: the whole stack (`up`), or one part (`api`, `worker`: run
by `cli/serve.py`, whose `run_api` and `run_worker` are reachable from here too).

`Stack` starts Redis if none answers, the Milvus Lite gRPC server (several processes can
share Milvus Lite only through it), one worker per queue and the API, each a child process
in its own process group, and stops them all on Ctrl-C or SIGTERM. Under `assetrag up` a
`Supervisor` restarts a child that dies, with backoff, on the same ports and data (so Redis
comes back from its append-only file); a child that dies five times within a minute stops
the stack with a message saying which and where its log is.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import redis
from rich.console import Console

# Re-exported: `assetrag api` and `assetrag worker` reach them through this module.
from cli.serve import default_pool as default_pool
from cli.serve import run_api as run_api
from cli.serve import run_worker as run_worker
from shared.settings import Settings

console = Console(stderr=True)
SERVER_SCHEMES = ("http://", "https://", "tcp://", "grpc://", "unix:")
STOP_GRACE_S = 15.0
WORKER_KINDS = ("embed", "query", "generate", "default")
# What CUDA_VISIBLE_DEVICES takes: an index, or a GPU's or MIG instance's UUID.
GPU_RE = re.compile(r"\d+|(GPU|MIG)-[0-9A-Za-z/-]+")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} while starting")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on {host}:{port} after {timeout_s:.0f}s")


def wait_ready(url: str, timeout_s: float, dead: Callable[[], list[str]]) -> None:
    """Until the API at `url` answers /readyz (Redis, Milvus and a worker on every queue are
    there); `dead` names the processes that died meanwhile, which ends the wait."""
    deadline = time.monotonic() + timeout_s
    body: object = None
    while time.monotonic() < deadline:
        if gone := dead():
            raise RuntimeError(f"stack processes died: {gone}")
        try:
            response = httpx.get(f"{url}/readyz", timeout=5)
            body = response.json()
            if response.status_code == 200:
                return
        except httpx.HTTPError as exc:
            body = repr(exc)
        time.sleep(0.5)
    raise RuntimeError(f"stack not ready after {timeout_s:.0f}s: {body}")


def scratch_env(base: Path) -> dict[str, str]:
    """The settings of a stack kept under `base` with a Redis of its own: the URL names an
    unused port, so the stack starts (and stops) a private redis-server."""
    return {
        "ASSETRAG_DATA_DIR": str(base / "data"),
        "ASSETRAG_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def visible_gpus(settings: Settings) -> list[str]:
    """The GPUs this host offers its embed workers: CUDA_VISIBLE_DEVICES when set, else what
    nvidia-smi lists; none with ASSETRAG_DEVICE=cpu or without NVIDIA's driver."""
    if settings.device == "cpu":
        return []
    if settings.cuda_visible_devices is not None:
        listed = [g.strip() for g in settings.cuda_visible_devices.split(",") if g.strip()]
        # CUDA stops at the first entry it cannot parse, and so do we.
        return list(itertools.takewhile(GPU_RE.fullmatch, listed))
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]


def worker_commands(settings: Settings, kinds: tuple[str, ...]) -> dict[str, list[str]]:
    """One worker per queue, except embed: one per visible GPU (one on the CPU if none).
    With ASSETRAG_METRICS_PORT=P each worker serves its metrics on its own port, P, P+1, ..."""
    commands: dict[str, list[str]] = {}
    for kind in kinds:
        gpus: list[str | None] = [*visible_gpus(settings)] if kind == "embed" else []
        for gpu in gpus or [None]:
            name = f"worker-{kind}" + (f"-gpu{gpu}" if gpu is not None and len(gpus) > 1 else "")
            argv = [*_cli(), "worker", "--queues", kind]
            if gpu is not None:
                argv += ["--gpu", gpu]
            if settings.metrics_port:
                argv += ["--metrics-port", str(settings.metrics_port + len(commands))]
            commands[name] = argv
    return commands


def metrics_ports(commands: dict[str, list[str]]) -> dict[str, str]:
    """The metrics port of each worker command that has one."""
    return {
        name: argv[argv.index("--metrics-port") + 1]
        for name, argv in commands.items()
        if "--metrics-port" in argv
    }


@dataclass
class Stack:
    """The whole service on one machine; `env` overrides the environment of every child."""

    host: str = "127.0.0.1"
    port: int = 8000
    env: dict[str, str] = field(default_factory=dict)
    workers: tuple[str, ...] = WORKER_KINDS
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log_dir: Path | None = None
    commands: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def under(
        cls, base: Path, env: dict[str, str] | None = None, workers: tuple[str, ...] = WORKER_KINDS
    ) -> Stack:
        """A stack of its own (a benchmark's): data and logs under `base`, a private Redis,
        the API on an unused port; `env` on top."""
        env = {**scratch_env(base), **(env or {})}
        return cls(port=free_port(), env=env, workers=workers, log_dir=base / "logs")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def settings(self) -> Settings:
        return Settings(**_settings_overrides(self.env))  # type: ignore[arg-type]

    def child_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            _die_with_parent(argv),
            env=self.child_env(),
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
        )
        self.procs[name] = proc
        self.commands[name] = argv
        return proc

    def respawn(self, name: str) -> subprocess.Popen[bytes]:
        """The child again, with the same command (and so the same port and data)."""
        return self.spawn(name, self.commands[name])

    @staticmethod
    def cli_argv() -> list[str]:
        return _cli()

    def start(self) -> None:
        try:
            self.start_redis()
            self.start_milvus()
            for name, argv in worker_commands(self.settings(), self.workers).items():
                self.spawn(name, argv)
            api = self.spawn("api", [*_cli(), "api", "--host", self.host, "--port", str(self.port)])
            wait_for_port(self.host, self.port, 60, api)
        except BaseException:
            self.stop()
            raise

    def start_redis(self) -> None:
        """A private redis-server, unless one answers at the configured URL."""
        settings = self.settings()
        if redis_answers(settings.redis_url):
            return
        if shutil.which("redis-server") is None:
            raise RuntimeError(
                f"no Redis answers at {settings.redis_url} and redis-server is not installed: "
                "install it (apt-get install redis-server) or point ASSETRAG_REDIS_URL at one"
            )
        port = free_port()
        data = settings.data_dir.resolve() / "redis"
        data.mkdir(parents=True, exist_ok=True)
        proc = self.spawn(
            "redis",
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(data),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ],
        )
        wait_for_port("127.0.0.1", port, 20, proc)
        self.env["ASSETRAG_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        console.print(f"[dim]started a private redis-server on port {port} ({data})[/]")

    def start_milvus(self) -> None:
        """The Milvus Lite gRPC server, unless the configured URI is a server's."""
        settings = self.settings()
        uri = settings.resolved_milvus_uri
        if uri.startswith(SERVER_SCHEMES):
            return
        port = free_port()
        data = Path(uri).expanduser().resolve()
        data.parent.mkdir(parents=True, exist_ok=True)
        proc = self.spawn(
            "milvus",
            [
                str(Path(sys.executable).parent / "milvus-lite"),
                "server",
                "--data-dir",
                str(data),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                # Milvus Lite 3 loses rows when several server threads write at once; one
                # thread serialises writes (searches take milliseconds with the HNSW index).
                "--max-workers",
                "1",
            ],
        )
        wait_for_port("127.0.0.1", port, 60, proc)
        self.env["ASSETRAG_MILVUS_URI"] = f"http://127.0.0.1:{port}"
        console.print(f"[dim]started the Milvus Lite server on port {port} ({data})[/]")

    def wait_ready(self, timeout_s: float = 180) -> None:
        wait_ready(self.url, timeout_s, self.dead)

    @contextlib.contextmanager
    def running(self, ready_timeout_s: float | None = 180) -> Iterator[Stack]:
        """Started, and ready unless `ready_timeout_s` is None, for the with block; stopped
        after it."""
        self.start()
        try:
            if ready_timeout_s is not None:
                self.wait_ready(ready_timeout_s)
            yield self
        finally:
            self.stop()

    def dead(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def stop(self) -> None:
        """SIGTERM every child's group (workers finish their current task), then SIGKILL."""
        for proc in reversed(list(self.procs.values())):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


class GiveUp(RuntimeError):
    """A child keeps dying: restarting it again would only hide the problem."""


@dataclass
class Supervisor:
    """Restarts a stack's children that die, with exponential backoff; gives up when one
    dies `max_failures` times within `window_s`."""

    stack: Stack
    say: Callable[[str], None]
    max_failures: int = 5
    window_s: float = 60.0
    max_backoff_s: float = 30.0
    _exits: dict[str, deque[float]] = field(default_factory=dict)
    _due: dict[str, float] = field(default_factory=dict)

    def check(self, now: float | None = None) -> None:
        """Notes children that died and restarts those whose backoff is over."""
        now = time.monotonic() if now is None else now
        for name in self.stack.dead():
            if name not in self._due:
                self._schedule(name, now)
        for name, when in list(self._due.items()):
            if now >= when:
                del self._due[name]
                proc = self.stack.respawn(name)
                self.say(f"[yellow]restarted {name} (pid {proc.pid})[/]")

    def _schedule(self, name: str, now: float) -> None:
        code = self.stack.procs[name].returncode
        exits = self._exits.setdefault(name, deque())
        exits.append(now)
        while now - exits[0] > self.window_s:
            exits.popleft()
        where = f" (log: {self.stack.log_dir / name}.log)" if self.stack.log_dir else ""
        if len(exits) >= self.max_failures:
            raise GiveUp(
                f"{name} exited {len(exits)} times within {self.window_s:.0f}s, last with code "
                f"{code}; giving up{where}"
            )
        delay = min(self.max_backoff_s, 2.0 ** (len(exits) - 1))
        self._due[name] = now + delay
        self.say(f"[yellow]{name} exited with code {code}; restarting in {delay:.0f}s[/]")


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _die_with_parent(argv: list[str]) -> list[str]:
    """Wrap a command so Linux sends it SIGTERM when the stack process dies: not even a
    SIGKILLed `assetrag up` leaves its children running.

    util-linux's setpriv sets the parent-death signal and execs the command. (A preexec_fn
    would run Python between fork and exec, which breaks when the parent has gRPC threads.)
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def _cli() -> list[str]:
    return [sys.executable, "-m", "cli"]


def _settings_overrides(env: dict[str, str]) -> dict[str, str]:
    prefix = "ASSETRAG_"
    return {k[len(prefix) :].lower(): v for k, v in env.items() if k.startswith(prefix)}


def _say(message: str) -> None:
    # A closed terminal or pipe (`assetrag up | tee log` and Ctrl-C) must not stop the shutdown.
    with contextlib.suppress(OSError):
        console.print(message)


def run_stack(host: str = "127.0.0.1", port: int = 8000) -> int:
    stack = Stack(host=host, port=port)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    supervisor = Supervisor(stack, _say)
    try:
        stack.start()
        redis_url = stack.env.get("ASSETRAG_REDIS_URL", stack.settings().redis_url)
        _say(
            f"[bold green]assetrag is up[/] on http://{host}:{port}  "
            f"(docs /docs, Redis {urlsplit(redis_url).netloc}); Ctrl-C stops it"
        )
        if ports := metrics_ports(stack.commands):
            _say("[dim]worker metrics: " + ", ".join(f"{n} :{p}" for n, p in ports.items()) + "[/]")
        while not stopping:
            supervisor.check()
            time.sleep(0.5)
        return 0
    except GiveUp as exc:
        _say(f"[bold red]{exc}[/]")
        return 1
    finally:
        _say("[dim]stopping…[/]")
        stack.stop()
