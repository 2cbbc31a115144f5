"""The boto3 S3 client from the config: credentials (config or boto3's standard chain), endpoint and
addressing style for S3-compatible stores (MinIO, Backblaze B2, Cloudflare R2, Wasabi), timeouts, retries."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config as BotoConfig

from cctv_daemon.config.model import AwsCredentials, S3Config
from cctv_daemon.core import constants as c

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def make_session(creds: AwsCredentials | None, region: str | None) -> boto3.session.Session:
    """Explicit credentials when the config has them, else boto3's chain (env, shared profile, role)."""
    region = region or (creds.region if creds else None)
    if creds is not None:
        return boto3.session.Session(
            aws_access_key_id=creds.accessKeyId.get_secret_value(),
            aws_secret_access_key=creds.secretAccessKey.get_secret_value(),
            aws_session_token=creds.sessionToken.get_secret_value() if creds.sessionToken else None,
            region_name=region,
        )
    return boto3.session.Session(region_name=region)


def make_client(s3: S3Config, creds: AwsCredentials | None, max_pool: int = 10) -> S3Client:
    session = make_session(creds, s3.region)
    s3_options: Any = {"addressing_style": s3.addressingStyle} if s3.addressingStyle != "auto" else None
    cfg = BotoConfig(
        connect_timeout=c.UPLOAD_CONNECT_TIMEOUT_S,
        read_timeout=c.UPLOAD_READ_TIMEOUT_S,
        retries={"max_attempts": c.UPLOAD_BOTO_MAX_ATTEMPTS, "mode": "standard"},
        max_pool_connections=max(10, max_pool),
        s3=s3_options,
        # Checksums only where S3 requires them: the newer default (CRC32 trailers on every PutObject) is
        # refused by several S3-compatible stores; integrity is verified after upload (ETag + size) anyway.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    region = s3.region or (creds.region if creds else None)
    if region is None and s3.endpointUrl is not None:
        region = "us-east-1"  # S3-compatible stores accept any; boto3 needs one to sign
    client: S3Client = session.client("s3", endpoint_url=s3.endpointUrl, region_name=region, config=cfg)
    return client


def downloader(s3: S3Config | None, creds: AwsCredentials | None) -> Callable[[str, Path], None] | None:
    """(key, destination) -> the object written there; None without s3Config. The client is made on first use."""
    if s3 is None:
        return None
    holder: list[S3Client] = []
    lock = threading.Lock()

    def download(key: str, dest: Path) -> None:
        with lock:
            if not holder:
                holder.append(make_client(s3, creds))
        holder[0].download_file(s3.s3Bucket, key, str(dest))

    return download
