"""A real Milvus server for the tests and benchmarks: the `milvus` package from PyPI (Milvus
2.3.5 standalone: the server binary with embedded etcd, local storage and RocksMQ).

Milvus 2.3 listens on every interface and has no setting to change that, so the server runs
in a network namespace of its own, joined to this host by a private veth pair: nothing but
this host reaches it. (That needs root, which CI has; elsewhere it starts without the
namespace and says so.)
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

_names = itertools.count()


@dataclass
class MilvusServerProcess:
    base: Path
    proc: subprocess.Popen[bytes]
    namespace: str | None
    uri: str

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.namespace is not None:
            subprocess.run(["ip", "netns", "del", self.namespace], check=False)


def _namespace() -> tuple[str, str, list[str]] | None:
    """A fresh network namespace linked to this host: (name, its address, command prefix)."""
    n = next(_names)
    tag = f"{os.getpid() % 100_000}{n}"
    name, host_end, far_end = f"assetrag-milvus-{tag}", f"amh{tag}", f"amn{tag}"
    subnet = f"10.{200 + os.getpid() % 50}.{n % 250}"
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", host_end, "type", "veth", "peer", "name", far_end],
        ["ip", "link", "set", far_end, "netns", name],
        ["ip", "addr", "add", f"{subnet}.1/30", "dev", host_end],
        ["ip", "link", "set", host_end, "up"],
        ["ip", "netns", "exec", name, "ip", "addr", "add", f"{subnet}.2/30", "dev", far_end],
        ["ip", "netns", "exec", name, "ip", "link", "set", far_end, "up"],
        ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
    ]
    for step in steps:
        if subprocess.run(step, capture_output=True, check=False).returncode != 0:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            return None
    return name, f"{subnet}.2", ["ip", "netns", "exec", name]


def start_milvus_server(base: Path, timeout_s: float = 120) -> MilvusServerProcess:
    """Starts Milvus 2.3.5 standalone with its data under `base`; returns once it answers."""
    from milvus import MilvusServer, _initialize_data_files

    server = MilvusServer(wait_for_started=False)
    server.set_base_dir(str(base))
    server.config.resolve()  # writes configs/milvus.yaml
    _initialize_data_files(server.config.base_data_dir)
    exe = server.get_milvus_executable_path()
    room = _namespace()
    if room is None:
        message = "no network namespace (not root?): Milvus listens on every interface"
        warnings.warn(message, stacklevel=2)
        name, address, prefix = None, "127.0.0.1", []
    else:
        name, address, prefix = room
    setpriv = shutil.which("setpriv")
    die_with_us = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
    env = {
        **os.environ,
        "DEPLOY_MODE": "STANDALONE",
        "METRICS_PORT": "9091",
        "MILVUS_RUN_DIR": str(base / "run"),
        "LD_LIBRARY_PATH": f"{Path(exe).parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
    }
    log = (base / "milvus.log").open("wb")
    proc = subprocess.Popen(
        [*prefix, *die_with_us, exe, "run", "standalone"],
        cwd=base,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    running = MilvusServerProcess(base, proc, name, f"http://{address}:{server.listen_port}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            running.stop()
            raise RuntimeError(f"Milvus exited with {proc.returncode}; see {base}/milvus.log")
        try:
            with urllib.request.urlopen(f"http://{address}:9091/healthz", timeout=2) as answer:
                if b"OK" in answer.read():
                    return running
        except OSError:
            time.sleep(0.3)
    running.stop()
    raise RuntimeError(f"Milvus did not answer within {timeout_s:.0f}s; see {base}/milvus.log")
