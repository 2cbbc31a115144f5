"""What an upload failure means: permanent (the operator must fix the bucket or credentials), the store out of
reach (network, timeouts: nothing to do with the object), or a failure of this one object."""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from cctv_daemon.core.redact import redact

# Errors an operator has to fix; retried only at the backoff cap.
PERMANENT_CODES = frozenset({
    "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
    "InvalidBucketName", "AccountProblem", "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed",
    "NoCredentials", "PartialCredentials", "InvalidStorageClass", "KMS.NotFoundException",
    "KMS.DisabledException", "403",
})  # fmt: skip
# 4xx statuses that are not the operator's problem.
TRANSIENT_4XX = frozenset({400, 404, 408, 409, 423, 429, 499})
TRANSIENT_CODES = frozenset({
    "RequestTimeout", "RequestTimeTooSkewed", "SlowDown", "Throttling", "ThrottlingException",
    "RequestLimitExceeded", "TooManyRequests", "InternalError", "ServiceUnavailable", "BadDigest",
    "IncompleteBody", "RequestTimeoutException", "OperationAborted",
})  # fmt: skip
_CODE_IN_TEXT = re.compile(r"An error occurred \(([A-Za-z0-9.]+)\)")
# No answer from the store at all: the network or the store is down, not this object's fault.
_UNREACHABLE = (BotoConnectionError, HTTPClientError, builtins.ConnectionError, TimeoutError)


class VerificationFailed(Exception):
    """The store reports a different size or checksum than the local file has."""


class UploadCancelled(Exception):
    """Raised from the progress callback to abort an upload (shutdown). Not an OSError on purpose, so that
    neither urllib3 nor botocore take it for a network error and retry."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def classify(exc: BaseException) -> tuple[bool, str, str]:
    """(permanent?, error code, redacted message) of an upload failure."""
    message = redact(str(exc) or type(exc).__name__)
    for e in _chain(exc):
        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            code = str(err.get("Code") or "Unknown")
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in PERMANENT_CODES:
                return True, code, redact(str(e))
            if code in TRANSIENT_CODES or status >= 500 or status in TRANSIENT_4XX or status == 0:
                return False, code, redact(str(e))
            return 400 <= status < 500, code, redact(str(e))
        if isinstance(e, NoCredentialsError):
            return True, "NoCredentials", message
        if isinstance(e, PartialCredentialsError):
            return True, "PartialCredentials", message
    found = _CODE_IN_TEXT.search(str(exc))
    if found:  # boto3's S3UploadFailedError keeps only the text of the ClientError
        code = found[1]
        return code in PERMANENT_CODES, code, message
    if isinstance(exc, VerificationFailed):
        return False, "VerificationFailed", message
    if isinstance(exc, BotoCoreError | OSError):
        return False, type(exc).__name__, message
    return False, type(exc).__name__, message


def unreachable(exc: BaseException) -> bool:
    """True when the store did not answer at all (connection refused/reset, DNS, timeouts)."""
    return any(isinstance(e, _UNREACHABLE) for e in _chain(exc))
