"""AWS canary keys end to end against moto's IAM server: `canary credential provision aws` makes
powerless IAM users, seeding places their real keys, a CloudTrail record of a key's use raises an
incident with the caller's address and user agent, and `canary credential retire aws` deletes the
users. An empty pool refuses to seed AWS keys unless the target is honeypot_only (and plan says so);
no secret reaches CLI output or logs.

CloudTrail records follow "CloudTrail record contents" and the userIdentity element for an IAM user
(https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html,
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html);
GetCallerIdentity needs no permission, so it is what an attacker with a found key calls first."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import random
import string
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import pytest
import structlog
from credential_support import register
from moto.server import ThreadedMotoServer
from seeder_helpers import Shop
from testkit import MakeConfig

from canary.config import Config, from_mapping
from canary.credentials import aws
from canary.credentials.cloudtrail import CloudTrailDirectorySource, CloudTrailProcessor
from canary.credentials.values import CredentialFactory
from canary.crypto import write_key_file
from canary.errors import ConfigError, SeedError
from canary.runtime import Runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store.registry import Registry

ACCOUNT = "123456789012"  # moto's default account
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
TOKENS_DDL = """
CREATE TABLE public.service_tokens (
    id                bigserial PRIMARY KEY,
    owner             text NOT NULL,
    access_key_id     varchar(20) NOT NULL UNIQUE,
    secret_access_key varchar(40) NOT NULL,
    last4             char(4)
);
"""


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """moto's IAM Query API on loopback (one per module; state reset per test by ``iam_endpoint``)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def iam_endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh moto account, with boto3 in this process pointed at test credentials only."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10).read()
    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    return moto_server


@pytest.fixture
def shop_rows() -> int:
    return 200


@pytest.fixture
async def shop(shop: Shop) -> Shop:
    """The shop plus a service_tokens table of real-looking AWS key pairs."""
    rng = random.Random(2)
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute(TOKENS_DDL)
        await conn.executemany(
            "INSERT INTO public.service_tokens (id, owner, access_key_id, secret_access_key, last4) VALUES ($1, $2, $3::text, $4::text, right($3::text, 4))",
            [(i, rng.choice(["billing", "search", "ledger"]), "AKIA" + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(16)),
              "".join(rng.choice(string.ascii_letters + string.digits + "/+") for _ in range(40))) for i in range(1, 60) if i % 3])
        await conn.execute(f'ALTER TABLE public.service_tokens OWNER TO "{shop.owner}"')
    finally:
        await conn.close()
    return shop


@pytest.fixture
def cli_config(data_dir: Path, control_dsn: str, iam_endpoint: str) -> Path:
    """A config file for the CLI: the test's control store, the tests' master key, moto as IAM."""
    key_file = data_dir / "master.key"
    write_key_file(key_file, bytes(range(32)))  # testkit.TEST_KEYRING's key
    path = data_dir / "canary.toml"
    path.write_text(f'[canary]\ndata_dir = "{data_dir}"\nmaster_key_file = "{key_file}"\nlog_level = "debug"\n'
                    f'[control]\ndsn = "{control_dsn}"\n[credentials.aws]\nendpoint_url = "{iam_endpoint}"\n')
    return path


async def _canary(config: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "canary", "-c", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**{k: v for k, v in os.environ.items() if k != "CANARY_MASTER_KEY"}, **AWS_ENV},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    return proc.returncode or 0, out.decode(), err.decode()


def _iam(endpoint: str) -> Any:
    return boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")


def _seed_config(make_config: MakeConfig, dsn: str, **target: object) -> Config:
    return make_config(datastores=[{"name": "shop", "dsn": dsn, "tables": [
        {"table": "public.service_tokens", "count": 2, "credential": "aws_key", **target}]}])


async def _pool_secrets(registry: Registry) -> list[str]:
    """Every key id and secret the pool holds (decrypted here only to prove they are shown nowhere)."""
    out = []
    for e in await aws.pool_entries(registry):
        out += [v for _, v in await registry.values_of(e.canary_id)]
    return out


def _get_caller_identity(key_id: str, user: dict[str, Any], when: str) -> dict[str, Any]:
    """The CloudTrail record of ``aws sts get-caller-identity`` run with a canary key from 203.0.113.9."""
    return {
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "principalId": user["UserId"], "arn": user["Arn"], "accountId": ACCOUNT,
                         "accessKeyId": key_id, "userName": user["UserName"]},
        "eventTime": when, "eventSource": "sts.amazonaws.com", "eventName": "GetCallerIdentity", "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.9",
        "userAgent": "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1014-aws exe/x86_64.ubuntu.22 prompt/off command/sts.get-caller-identity",
        "requestParameters": None, "responseElements": None, "requestID": str(uuid.uuid4()), "eventID": str(uuid.uuid4()),
        "readOnly": True, "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
        "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": "sts.amazonaws.com"},
    }


async def test_provision_seed_use_retire(shop: Shop, make_config: MakeConfig, runtime: Runtime, cli_config: Path,
                                         iam_endpoint: str, tmp_path: Path) -> None:
    """Three powerless IAM users are provisioned (no policy, inline policy or group; realistic names at
    path /), two of their keys are seeded into service_tokens, a CloudTrail log file recording
    GetCallerIdentity with one of them raises an incident carrying 203.0.113.9 and the user agent,
    retiring the rows leaves the users (listed as remaining), and `retire aws` deletes every user.
    No key id or secret appears in any CLI output or log."""
    rc, out_provision, err_provision = await _canary(cli_config, "credential", "provision", "aws", "--count", "3")
    assert rc == 0, err_provision
    iam = _iam(iam_endpoint)
    users = {u["UserName"]: u for u in iam.list_users()["Users"]}
    assert len(users) == 3 and all(u["Path"] == "/" and u["UserName"].startswith("svc-") for u in users.values())
    keys: dict[str, str] = {}  # key id -> user
    for name in users:
        assert iam.list_attached_user_policies(UserName=name)["AttachedPolicies"] == []
        assert iam.list_user_policies(UserName=name)["PolicyNames"] == []
        assert iam.list_groups_for_user(UserName=name)["Groups"] == []
        [meta] = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
        keys[meta["AccessKeyId"]] = name
    registry = Registry(runtime.pool, runtime.keyring)
    secrets_ = await _pool_secrets(registry)
    assert len(secrets_) == 6 and set(keys) <= set(secrets_)

    seeder = PostgresSeeder.from_config(_seed_config(make_config, shop.dsn), "shop", registry)
    with structlog.testing.capture_logs() as seed_logs:
        result = await seeder.apply()
    assert result.added == {"public.service_tokens": 2}
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute("SET row_security = off")
        placed = {r["access_key_id"]: r for r in await conn.fetch(
            "SELECT access_key_id, secret_access_key, last4 FROM public.service_tokens WHERE access_key_id = ANY($1::text[])", list(keys))}
    finally:
        await conn.close()
    assert len(placed) == 2 and all(r["last4"] == k[-4:] and r["secret_access_key"] in secrets_ for k, r in placed.items())
    rc, listing, err_list = await _canary(cli_config, "credential", "list", "aws")
    assert rc == 0 and "# 1 unplaced, 2 placed, 0 retired, 0 deleted" in listing
    assert listing.count("placed in shop/public.service_tokens") == 2

    used = sorted(placed)[0]
    user = users[keys[used]]
    day = tmp_path / "AWSLogs" / ACCOUNT / "CloudTrail" / "us-east-1" / "2026" / "12" / "02"
    day.mkdir(parents=True)
    denied = {**_get_caller_identity(used, user, "2026-12-02T04:58:10Z"), "eventSource": "s3.amazonaws.com",
              "eventName": "ListBuckets", "errorCode": "AccessDenied", "eventID": str(uuid.uuid4()),
              "errorMessage": f"User: {user['Arn']} is not authorized to perform: s3:ListAllMyBuckets"}
    doc = {"Records": [_get_caller_identity(used, user, "2026-12-02T04:58:03Z"), denied]}
    (day / f"{ACCOUNT}_CloudTrail_us-east-1_20261202T0500Z_Qx7RkVnW2bTz9aLm.json.gz").write_bytes(
        gzip.compress(json.dumps(doc).encode()))
    src = CloudTrailDirectorySource(tmp_path, poll=60)
    src.attach(runtime)
    with structlog.testing.capture_logs() as scan_logs:
        assert await src.scan() == 1
    [incident] = await runtime.pool.fetch("SELECT * FROM incidents")
    assert incident["kind"] == "used" and incident["severity"] == "critical"
    assert incident["origin"]["client_addr"] == "203.0.113.9"
    assert incident["origin"]["user_agent"].startswith("aws-cli/2.15.30") and incident["actor"]["user"] == user["UserName"]
    events = await runtime.pool.fetch("SELECT evidence FROM events ORDER BY observed_at")
    assert [e["evidence"]["event_name"] for e in events] == ["GetCallerIdentity", "ListBuckets"]
    assert events[1]["evidence"]["error_code"] == "AccessDenied"

    await seeder.retire()
    rc, listing2, _ = await _canary(cli_config, "credential", "list", "aws")
    assert rc == 0 and listing2.count("row retired, IAM user remains") == 2
    assert len(iam.list_users()["Users"]) == 3  # retiring the rows leaves the users
    rc, out_retire, err_retire = await _canary(cli_config, "credential", "retire", "aws", "--retired", "--unplaced")
    assert rc == 0, err_retire
    assert out_retire.count("IAM user and keys deleted") == 3
    assert iam.list_users()["Users"] == []
    rc, listing3, _ = await _canary(cli_config, "credential", "list", "aws")
    assert "# 0 unplaced, 0 placed, 0 retired, 3 deleted" in listing3
    shown = "\n".join([out_provision, err_provision, listing, err_list, listing2, listing3, out_retire, err_retire,
                       repr(seed_logs), repr(scan_logs)])
    for value in secrets_:
        assert value not in shown


async def test_empty_pool_refuses_and_honeypot_only_says_so(shop: Shop, make_config: MakeConfig, runtime: Runtime,
                                                           cli_config: Path, data_dir: Path) -> None:
    """With no AWS pool keys a seed (and its plan) of an aws_key target is refused with an error naming
    the ways out; with honeypot_only = true derived fakes are written and `canary plan` warns that
    they can fire only at canary's own honeypot, never at AWS. A provision with a path IAM would not
    take is refused before any IAM call, naming the option."""
    registry = Registry(runtime.pool, runtime.keyring)
    with pytest.raises(SeedError, match=r"AWS key pool has 0 unplaced.*provision aws.*honeypot_only"):
        await PostgresSeeder.from_config(_seed_config(make_config, shop.dsn), "shop", registry).plan()
    with pytest.raises(SeedError, match="AWS key pool"):
        await PostgresSeeder.from_config(_seed_config(make_config, shop.dsn), "shop", registry).apply()
    with open(cli_config, "a") as fh:
        fh.write(f'[[datastores]]\nname = "shop"\ndsn = "{shop.dsn}"\n[[datastores.tables]]\ntable = "public.service_tokens"\n'
                 'count = 2\ncredential = "aws_key"\nhoneypot_only = true\n')
    rc, out, err = await _canary(cli_config, "plan")
    assert rc == 0, err
    assert "honeypot_only: these 2 AWS keys are derived fakes" in out and "never when used against AWS" in out
    result = await PostgresSeeder.from_config(_seed_config(make_config, shop.dsn, honeypot_only=True), "shop", registry).apply()
    assert result.added == {"public.service_tokens": 2} and await aws.pool_entries(registry) == []
    rc, out, err = await _canary(cli_config, "credential", "provision", "aws", "--count", "1", "--path", "canary")
    assert rc != 0 and "--path: Value error, an IAM path starts and ends with /" in out + err


async def test_pool_add_from_file_never_echoes(runtime: Runtime, cli_config: Path, data_dir: Path, iam_endpoint: str) -> None:
    """Keys made by hand (the IAM console's CSV) join the pool as unplaced canaries; adding them again
    skips them; --verify refuses a key whose user has a policy; a malformed entry is named by number,
    never by value; no key id or secret is printed."""
    iam = _iam(iam_endpoint)
    made = []
    for name in ("ci-artifacts", "backup-reader"):
        iam.create_user(UserName=name)
        made.append(iam.create_access_key(UserName=name)["AccessKey"])
    csv_file = data_dir / "keys.csv"
    csv_file.write_text("User name,Access key ID,Secret access key\n"
                        + "".join(f"{k['UserName']},{k['AccessKeyId']},{k['SecretAccessKey']}\n" for k in made))
    rc, out, err = await _canary(cli_config, "credential", "pool", "add", "aws", "--from", str(csv_file), "--verify")
    assert rc == 0, err
    assert "2 keys added to the AWS pool, 0 already registered" in out
    rc, again, _ = await _canary(cli_config, "credential", "pool", "add", "aws", "--from", str(csv_file))
    assert rc == 0 and "0 keys added to the AWS pool, 2 already registered" in again
    entries = await aws.pool_entries(Registry(runtime.pool, runtime.keyring))
    assert [(e.state, e.origin, e.iam_user) for e in entries] == [("unplaced", "registered", "ci-artifacts"),
                                                                  ("unplaced", "registered", "backup-reader")]
    iam.create_user(UserName="too-powerful")
    policy = iam.create_policy(PolicyName="s3-read", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}))["Policy"]
    iam.attach_user_policy(UserName="too-powerful", PolicyArn=policy["Arn"])
    strong = iam.create_access_key(UserName="too-powerful")["AccessKey"]
    json_file = data_dir / "keys.json"
    json_file.write_text(json.dumps([{"AccessKey": {**strong, "CreateDate": "2026-12-02T00:00:00Z"}}]))
    rc, refused, refused_err = await _canary(cli_config, "credential", "pool", "add", "aws", "--from", str(json_file), "--verify")
    assert rc != 0 and "too-powerful is not powerless (attached policy s3-read)" in refused + refused_err
    bad = data_dir / "bad.csv"
    bad.write_text(f"Access key ID,Secret access key\n{made[0]['AccessKeyId']},{made[0]['SecretAccessKey'][:30]}\n")
    rc, bad_out, bad_err = await _canary(cli_config, "credential", "pool", "add", "aws", "--from", str(bad))
    assert rc != 0 and "entry 1: no 40-character secret access key" in bad_out + bad_err
    shown = out + err + again + refused + refused_err + bad_out + bad_err
    for k in [*made, strong]:
        assert k["SecretAccessKey"] not in shown and k["AccessKeyId"] not in shown


@pytest.mark.parametrize(("field", "value", "ok"), [
    ("path", "/", True), ("path", "/service/", True), ("path", "service", False), ("path", "/a b/", False),
    ("name_pattern", "svc-{word}-{word}", True), ("name_pattern", "{word}{n}{n}", True),
    ("name_pattern", "svc-fixed", False), ("name_pattern", "svc {word}", False), ("name_pattern", "{word}" + "x" * 60, False),
    ("tag", "team=platform", True), ("tag", "no-equals", False),
])
def test_iam_settings_are_validated(field: str, value: str, ok: bool) -> None:
    """[credentials.aws] takes only IAM paths (/.../), name patterns with {word} that stay within IAM's
    user-name characters and 64 characters, and key=value tags."""
    data = {"credentials": {"aws": {field: value}}}
    if ok:
        assert getattr(from_mapping(data).credentials.aws, field) == value
    else:
        with pytest.raises(ConfigError, match=f"credentials.aws.{field}"):
            from_mapping(data)


def test_drawn_names_look_like_service_accounts() -> None:
    """Names drawn from the default pattern are distinct IAM user names of two different words."""
    rng = random.Random(5)
    taken: set[str] = set()
    for _ in range(200):
        name = aws.draw_name("svc-{word}-{word}", rng, taken)
        taken.add(name)
        _, first, second = name.split("-")
        assert aws.USER_NAME.match(name) and first in aws.WORDS and second in aws.WORDS and first != second
    assert len(taken) == 200


async def test_service_name_in_source_address_is_not_a_client_address(runtime: Runtime) -> None:
    """A CloudTrail record whose sourceIPAddress is an AWS service's name (a call the service made on
    the key holder's behalf) raises the event with that name as origin.aws_service and no client
    address; an IP address stays the client address."""
    cred = CredentialFactory(runtime.keyring).aws_key()
    await register(runtime, cred, table="public.integrations")
    user = {"UserId": "AIDAEXAMPLE0000000000", "Arn": f"arn:aws:iam::{ACCOUNT}:user/svc-etl-sync", "UserName": "svc-etl-sync"}
    by_service = {**_get_caller_identity(cred.secret, user, "2026-12-02T05:00:00Z"), "sourceIPAddress": "athena.amazonaws.com",
                  "userAgent": "athena.amazonaws.com"}
    by_ip = {**_get_caller_identity(cred.secret, user, "2026-12-02T05:00:01Z"), "sourceIPAddress": "2001:db8::7"}
    events = await CloudTrailProcessor(runtime).events_for([by_service, by_ip], "test")
    assert [e.origin.get("client_addr") for e in events] == [None, "2001:db8::7"]
    assert events[0].origin["aws_service"] == "athena.amazonaws.com" and "aws_service" not in events[1].origin
