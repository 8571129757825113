"""An S3-protocol server for the tests: moto's server mode (`moto_server`), as its own process.

Why moto: no S3 server installs from this machine's package registries as quickly. Debian's
OpenStack Swift with its s3api middleware is the most production-like one available, but it
needs a ring, an account, container and object server, memcached and keystone-less auth set
up before it answers; moto's server speaks the same REST protocol (SigV4, path-style
addressing, HEAD/GET/PUT/DELETE, error codes) from one process that starts in about a second.
The blob store talks to it through boto3 exactly as it talks to MinIO or AWS.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.stack import free_port, wait_for_port

ACCESS_KEY = "assetrag-test"
SECRET_KEY = "assetrag-test-secret"
REGION = "us-east-1"


@dataclass
class S3Server:
    proc: subprocess.Popen[bytes]
    endpoint: str

    def env(self) -> dict[str, str]:
        """The standard AWS variables a process needs to reach this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def new_bucket(self) -> str:
        name = f"assetrag-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def start_s3_server(log: Path) -> S3Server:
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    out = log.open("ab")
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
    )
    wait_for_port("127.0.0.1", port, 30, proc)
    return S3Server(proc, f"http://127.0.0.1:{port}")
