"""Where the job's checkpoints and savepoints go, and which one a restarted job resumes from.

Paimon commits the lake on checkpoints, so only a restore from a retained checkpoint (not the Kafka group offsets
alone) resumes a crashed run exactly once. Each job keeps its checkpoints under its own folder,
``<checkpoint root>/<consumer group>/<job id>/chk-N`` (and savepoints under ``<savepoint root>/<consumer group>/``),
so the newest one of "this job" is found without a catalogue: the newest ``_metadata`` under those two folders. The
consumer group names the job because it is what holds its place in the topic.

Roots come from the job's ``--checkpoint-dir`` flag, else the cluster's ``execution.checkpointing.dir`` /
``execution.checkpointing.savepoint-dir`` (under ``flink run``), else ``$DATA_DIR/flink/checkpoints`` and
``$DATA_DIR/flink/savepoints``. file:// and s3:// roots can be searched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from base.config import Settings
from base.errors import UserError

_CHECKPOINT = re.compile(r"(?:^|/)[0-9a-f]{32}/chk-\d+$")
_SAVEPOINT = re.compile(r"(?:^|/)savepoint-[0-9a-f]{6}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Retained:
    """A completed checkpoint or savepoint: ``path`` is what ``execution.state-recovery.path`` takes."""

    path: str
    kind: str  # "checkpoint" or "savepoint"
    taken_at: float  # epoch seconds of its _metadata


def default_roots(settings: Settings) -> tuple[str, str]:
    """(checkpoint root, savepoint root) when neither the job nor the cluster names one."""
    base = settings.data_dir / "flink"
    return (base / "checkpoints").as_uri(), (base / "savepoints").as_uri()


def job_folder(root: str, group_id: str) -> str:
    """The job's own folder under a checkpoint or savepoint root."""
    return f"{root.rstrip('/')}/{group_id}"


def latest(settings: Settings, folders: tuple[str, ...]) -> Retained | None:
    """The newest completed checkpoint or savepoint in ``folders`` (a job's folders), or None."""
    found = [r for folder in folders for r in _retained(settings, folder)]
    return max(found, key=lambda r: r.taken_at, default=None)


def _retained(settings: Settings, folder: str) -> Iterator[Retained]:
    uri = urlparse(folder)
    if uri.scheme in ("", "file"):
        yield from _local(Path(uri.path))
    elif uri.scheme in ("s3", "s3a"):
        yield from _s3(settings, uri.netloc, uri.path.strip("/"), uri.scheme)
    else:
        raise UserError(f"cannot look for retained checkpoints in {folder} (only file:// and s3:// are searched): "
                        "start with --restore-from PATH or --fresh")


def _local(folder: Path) -> Iterator[Retained]:
    if not folder.is_dir():
        return
    for metadata in folder.glob("*/chk-*/_metadata"):
        yield from _candidate(metadata.parent.as_uri(), metadata.stat().st_mtime)
    for metadata in folder.glob("savepoint-*/_metadata"):
        yield from _candidate(metadata.parent.as_uri(), metadata.stat().st_mtime)


def _s3(settings: Settings, bucket: str, prefix: str, scheme: str) -> Iterator[Retained]:
    from local_services import s3

    client = s3.client(settings)
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"].endswith("/_metadata"):
                    parent = obj["Key"].rsplit("/", 1)[0]
                    yield from _candidate(f"{scheme}://{bucket}/{parent}", obj["LastModified"].timestamp())
    except Exception as exc:  # botocore's errors: unreachable endpoint, no such bucket, denied
        raise UserError(f"cannot list retained checkpoints in s3://{bucket}/{prefix} at {settings.s3_endpoint} "
                        f"({type(exc).__name__}): start with --restore-from PATH or --fresh") from None


def _candidate(path: str, taken_at: float) -> Iterator[Retained]:
    if _CHECKPOINT.search(path):
        yield Retained(path, "checkpoint", taken_at)
    elif _SAVEPOINT.search(path):
        yield Retained(path, "savepoint", taken_at)
