"""The demo's closing summary (pure logic): one aligned column of values, the balance stated plainly."""

from __future__ import annotations

import re

from pipeline.demo import Summary


def test_summary_values_line_up_and_state_the_balance() -> None:
    summary = Summary(produced=130_200, backlog=15_510, raw_rows=145_564, rejected_rows=146, drained=True,
                      aggregate_rows={"user_aggregations": 110_661, "user_action_aggregations": 138_843,
                                      "user_aggregations_realtime": 323_614}, freshness_s=71.2)
    lines = summary.lines()
    assert lines[0] == "summary"
    body = lines[1:]
    # label, at least two spaces, value: every value starts in the same column, even after the longest label
    columns = {re.match(r"^  \S.*?\S {2,}(?=\S)", line).end() for line in body}
    assert len(columns) == 1, body
    assert "  analytics.user_aggregations_realtime  323,614 rows" in body  # the longest label
    assert [line.split()[-1] for line in body if "produced = raw + rejected" in line] == ["yes"]
    assert summary.ok

    short = Summary(produced=10, raw_rows=9, rejected_rows=0, drained=True)
    assert [line.split()[-1] for line in short.lines() if "produced = raw + rejected" in line] == ["NO"]
    assert not short.ok


def test_summary_says_whether_clickhouse_has_every_aggregate() -> None:
    def loaded(left: int | None) -> list[str]:
        return [line.split("ClickHouse", 1)[1].strip() for line in Summary(aggregates_left=left).lines()
                if "aggregates loaded into ClickHouse" in line]

    assert loaded(0) == ["yes"]
    assert loaded(1_234) == ["NO (1,234 records left)"]
    assert loaded(-1) == ["NO"]  # not known to be caught up (the broker did not answer)
    assert loaded(None) == []  # no loader in the service: nothing was waited for


def test_run_sh_help_names_run_sh_and_says_what_it_does() -> None:
    """`./run.sh --help` is the usage of ./run.sh (not of `pipeline demo`), set-up's lines left out, and says what
    the script does; the same demo through `pipeline demo --help` keeps its own name."""
    import subprocess
    import sys
    from pathlib import Path

    from base.config import PROJECT_ROOT

    shown = subprocess.run([str(PROJECT_ROOT / "run.sh"), "--help"], capture_output=True, text=True, timeout=120,
                           cwd="/")
    assert shown.returncode == 0 and shown.stdout.startswith("usage: ./run.sh [-h] [--duration SECONDS]"), shown
    description = " ".join(shown.stdout.split())
    assert "Sets up what it needs first (scripts/setup.sh" in description and "prints the summary" in description
    assert "pipeline demo" not in shown.stdout and "setup:" not in shown.stdout
    pipeline = subprocess.run([str(Path(sys.executable).parent / "pipeline"), "demo", "--help"], capture_output=True,
                              text=True, timeout=60)
    assert pipeline.returncode == 0 and pipeline.stdout.startswith("usage: pipeline demo [-h]"), pipeline.stdout
