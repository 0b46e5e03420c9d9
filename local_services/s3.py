"""A real S3-compatible server: versitygw (S3 gateway over a local POSIX directory), credentials required.

Why versitygw rather than S3Proxy: S3Proxy's filesystem backends answer HEAD on a "directory" key
as if it were a zero-byte object, which makes Hadoop S3A (Paimon's S3 file IO in Flink) refuse
to create directories; versitygw keeps S3's key semantics.
"""

from __future__ import annotations

from base.config import PROJECT_ROOT, Settings, search_path
from base.errors import UserError
from local_services.process import (
    ManagedProcess,
    port_open,
    require_port_free,
    status_line,
    stop_line,
    wait_until,
)

VERSITYGW = PROJECT_ROOT / ".cache" / "bin" / "versitygw"


def process(settings: Settings) -> ManagedProcess:
    return ManagedProcess("s3", settings.run_dir, settings.logs_dir)


def client(settings: Settings):  # -> botocore client; boto3 is imported lazily (slow import)
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}, connect_timeout=3),
    )


def healthy(settings: Settings) -> bool:
    if not port_open("127.0.0.1", settings.s3_port):
        return False
    try:
        client(settings).list_buckets()
        return True
    except Exception:
        return False


def start(settings: Settings, timeout: float = 60.0, virtual_domain: str | None = None) -> str:
    """Start versitygw on S3_ENDPOINT's port. Path-style only by default, as MinIO runs without MINIO_DOMAIN (every
    client of the project uses path-style requests); ``virtual_domain`` also answers bucket.<domain> hosts."""
    proc = process(settings)
    if healthy(settings):
        who = f"pid {proc.pid()}" if proc.pid() else "started elsewhere"
        return f"s3 already running ({who}) on {settings.s3_endpoint}"
    if not VERSITYGW.exists():
        raise UserError(f"the S3 server binary is missing ({VERSITYGW}): run scripts/setup.sh first")
    require_port_free("s3", settings.s3_port)
    root = settings.data_dir / "s3"
    (root / settings.s3_bucket).mkdir(parents=True, exist_ok=True)  # a top-level directory is a bucket
    env = {
        "PATH": search_path(),
        # Credentials through the environment, not argv, so `ps` does not show the secret.
        "ROOT_ACCESS_KEY": settings.s3_access_key,
        "ROOT_SECRET_KEY": settings.s3_secret_key,
    }
    argv = [str(VERSITYGW), "--port", f"127.0.0.1:{settings.s3_port}", "--quiet"]
    if virtual_domain:
        argv += ["--virtual-domain", virtual_domain]
    pid = proc.start([*argv, "posix", str(root)], env=env)
    wait_until(lambda: healthy(settings), timeout, "s3", proc)
    return f"s3 started (pid {pid}) on {settings.s3_endpoint}; log {proc.log_file}"


def ensure_bucket(settings: Settings, bucket: str | None = None) -> bool:
    """Create the warehouse bucket if missing. True if it was created."""
    bucket = bucket or settings.s3_bucket
    s3 = client(settings)
    try:
        names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    except Exception as exc:
        raise UserError(f"s3: cannot reach {settings.s3_endpoint} ({exc}); is it started?") from None
    if bucket in names:
        return False
    s3.create_bucket(Bucket=bucket)
    return True


def stop(settings: Settings) -> str:
    return stop_line("s3", process(settings))


def status(settings: Settings) -> str:
    return status_line("s3", process(settings), healthy(settings), settings.s3_endpoint)
