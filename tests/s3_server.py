"""A local S3 + STS + IAM for sink tests: moto's server (real HTTP, SigV4) on 127.0.0.1.

A test module starts one (``S3Server.start()``) and ``prepare``s it for every test: reset (no buckets,
roles or assumed roles, IAM enforcement off) and AWS credentials in the environment for the default
credential chain, never the user's ``~/.aws``. ``enforce_iam(after=n)`` turns moto's IAM enforcement on after ``n`` more requests, so
an assumed role's policy decides what it may write (as Security Lake's provider roles do).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import boto3
import pytest
import requests
from moto.iam.access_control import S3IAMRequest
from moto.server import ThreadedMotoServer
from moto.sts.models import sts_backends

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"


@dataclass
class S3Server:
    url: str
    server: ThreadedMotoServer | None = None

    @classmethod
    def start(cls) -> S3Server:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        return cls(f"http://{host}:{port}", server)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def prepare(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Reset the server; an IAM user that may assume roles and write anywhere becomes the default
        credential chain's identity (environment variables; no config file, no instance metadata)."""
        self.reset()
        iam = self.client("iam")
        iam.create_user(UserName="canary")
        iam.put_user_policy(UserName="canary", PolicyName="all", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole", "s3:*"], "Resource": "*"}]}))
        key = iam.create_access_key(UserName="canary")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        _s3_canonical_paths(monkeypatch)

    def client(self, service: str, **credentials: Any) -> Any:
        credentials = credentials or {"aws_access_key_id": "AKIAADMIN00000000000", "aws_secret_access_key": "admin"}
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, **credentials)

    def reset(self) -> None:
        self.reset_auth()
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def enforce_iam(self, after: int = 0) -> None:
        requests.post(f"{self.url}/moto-api/reset-auth", data=str(after).encode(), timeout=10).raise_for_status()

    def reset_auth(self) -> None:
        """IAM enforcement off again (the test's own admin calls are not the sink's)."""
        requests.post(f"{self.url}/moto-api/reset-auth", data=b"inf", timeout=10).raise_for_status()

    def objects(self, bucket: str) -> dict[str, bytes]:
        s3 = self.client("s3")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in sorted(keys)}

    def provider_role(self, name: str, external_id: str, writable_prefix: str, bucket: str) -> str:
        """A role like Security Lake's provider role: assumable with ``external_id``, allowed to put objects
        only under ``writable_prefix``. Returns its ARN."""
        iam = self.client("iam")
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]}
        arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"arn:aws:s3:::{bucket}/{writable_prefix}*"]}]}
        iam.put_role_policy(RoleName=name, PolicyName="write", PolicyDocument=json.dumps(policy))
        return arn

    def assumed_roles(self) -> list[tuple[str, str | None]]:
        """(assumed-role ARN, external id) of every AssumeRole the server granted."""
        return [(r.arn, r.external_id) for r in sts_backends[ACCOUNT]["global"].assumed_roles]


def _s3_canonical_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fix to moto 5's IAM enforcement (not to the code under test): it checks an S3 request's SigV4
    signature against the path as werkzeug re-quotes it, which leaves '=' and ':' bare where botocore and
    S3 encode them (%3D, %3A), so every key under a Security Lake partition (``region=...``) would fail with
    SignatureDoesNotMatch. The path is re-encoded the way S3's canonical URI is."""
    original = S3IAMRequest.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        path, sep, query = self._path.partition("?")
        self._path = quote(unquote(path), safe="/~") + sep + query

    monkeypatch.setattr(S3IAMRequest, "__init__", init)
