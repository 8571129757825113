"""A redis-server of a test's own, persisting as `assetrag up` runs it (append-only file,
fsync every second), that the test can restart on the same port and directory."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from cli.stack import free_port, wait_for_port


class RestartableRedis:
    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RestartableRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ],
            stdout=(self.data_dir / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for_port("127.0.0.1", self.port, 20, self.proc)
        self._wait_loaded()
        return self

    def stop(self) -> None:
        """SIGTERM: Redis fsyncs its append-only file and closes every client's connection."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(20)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _wait_loaded(self) -> None:
        # The port opens before the append-only file is replayed (LOADING errors meanwhile).
        client = redis.Redis(port=self.port)
        try:
            for _ in range(200):
                try:
                    if client.ping():
                        return
                except redis.BusyLoadingError:
                    time.sleep(0.05)
            raise RuntimeError("redis-server did not finish loading its append-only file")
        finally:
            client.close()
