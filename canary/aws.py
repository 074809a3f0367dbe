"""What canary's AWS clients share (the IAM pool, CloudTrail from S3, the Security Lake sink): botocore
kept from logging secrets, the error codes a later attempt can get past, and clients under an assumed
role (STS AssumeRole with an external ID) that are made again before the role's credentials expire.
boto3 blocks: call these from a worker thread."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import botocore.exceptions

#: S3 / STS / IAM error codes that a later attempt can succeed past (a 4xx with any other code is a refusal)
RETRYABLE_CODES = frozenset({
    "SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "Throttling", "ThrottlingException",
    "RequestThrottled", "RequestLimitExceeded", "TooManyRequestsException", "RequestTimeTooSkewed",
    "ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired", "OperationAborted", "IDPCommunicationError",
})
#: codes that say the (assumed-role) credentials expired: make the client again
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired", "InvalidToken"})
#: an assumed role's client is made again this long before its credentials expire
REFRESH_MARGIN = dt.timedelta(minutes=5)


def quiet_botocore() -> None:
    """botocore logs response bodies at DEBUG, and CreateAccessKey's and AssumeRole's hold secrets: never let
    a debug log level reach them."""
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger(name).getEffectiveLevel()))


def error_code(exc: BaseException) -> str | None:
    """AWS's error code of a botocore ClientError (None for anything else)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def expired(exc: BaseException) -> bool:
    return error_code(exc) in EXPIRED_CODES


def stale(expires: dt.datetime | None, now: dt.datetime | None = None) -> bool:
    """Whether a client whose credentials expire at ``expires`` (None: never) must be made again."""
    return expires is not None and expires - REFRESH_MARGIN <= (now or dt.datetime.now(dt.UTC))


def assumed_client(session: Any, service: str, *, role_arn: str, session_name: str, external_id: str | None = None,
                   **client_args: Any) -> tuple[Any, dt.datetime | None]:
    """A ``service`` client of ``session`` under ``role_arn`` (AssumeRole through the same endpoint and
    settings, ``client_args``), and when its credentials expire. botocore's exceptions propagate."""
    args: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": session_name[:64]}
    if external_id is not None:
        args["ExternalId"] = external_id
    creds = session.client("sts", **client_args).assume_role(**args)["Credentials"]
    client = session.client(service, aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"], **client_args)
    expires = creds.get("Expiration")
    return client, expires if isinstance(expires, dt.datetime) else None
