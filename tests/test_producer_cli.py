"""The produce CLI as a user runs it (a subprocess): help, and one-line errors with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from base.config import PROJECT_ROOT

FLAGS = ("--rate", "--count", "--duration", "--workers", "--users", "--seed", "--start-time", "--sim-rate",
         "--zipf", "--jitter-ms", "--late-fraction", "--max-lateness", "--invalid-fraction", "--topic",
         "--partitions", "--backend", "--linger-ms", "--batch-bytes", "--compression", "--delivery-timeout",
         "--summary-json", "--quiet", "--metrics-port", "--metrics-host", "--metrics-linger")  # fmt: skip


def _cli(*args: str, module: str = "pipeline") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("module", ["pipeline", "producer"])
def test_help_explains_every_flag(module: str) -> None:
    args = ("produce", "--help") if module == "pipeline" else ("--help",)
    result = _cli(*args, module=module)
    assert result.returncode == 0, result.stderr
    for flag in FLAGS:
        assert flag in result.stdout
    assert "kafka-python" in result.stdout and "confluent" in result.stdout


def _assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr  # README: 2 for a bad flag or an unreachable service
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--rate", "fast"), "--rate"),
        (("--count", "-5"), "--count"),
        (("--workers", "0"), "--workers"),
        (("--invalid-fraction", "1.5"), "--invalid-fraction"),
        (("--users", "30000001"), "--users"),
        (("--backend", "java"), "--backend"),
        (("--start-time", "yesterday"), "--start-time"),
        (("--late-fraction", "0.1"), "--max-lateness"),
        (("--topic", "bad topic!"), "--topic"),
        (("--topic", "x" * 250), "--topic"),
        (("--metrics-port", "70000"), "--metrics-port"),
        (("--metrics-port", "0"), "--metrics-port"),
        (("--metrics-port", "http"), "--metrics-port"),
        (("--metrics-linger", "5"), "--metrics-port"),
        (("--metrics-port", "9464", "--metrics-host", "192.0.2.1"), "--metrics-host"),  # TEST-NET: not this machine
    ],
)
def test_bad_flag_is_one_line_and_nonzero(args: tuple[str, ...], needle: str) -> None:
    _assert_one_line_error(_cli("produce", "--count", "1", *args), needle)


def test_metrics_port_in_use_is_one_line_before_anything_is_sent() -> None:
    """The port is bound first: with no broker reachable either, the error is about the port."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = _cli("--kafka-bootstrap", "127.0.0.1:1", "produce", "--count", "10", "--metrics-port", port)
    _assert_one_line_error(result, "--metrics-port", port, "in use")


def test_unreachable_broker_is_one_line_and_nonzero() -> None:
    for backend in ("kafka-python", "confluent"):
        result = _cli("--kafka-bootstrap", "127.0.0.1:1", "produce", "--count", "10", "--backend", backend)
        _assert_one_line_error(result, "127.0.0.1:1")
