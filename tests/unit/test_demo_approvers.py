"""What `make demo INTERACTIVE=1` prints before it waits: each user, their password, the seats they can fill."""

from __future__ import annotations

from pathlib import Path

import yaml

from gardien.demo.airflow_local import DEMO_USERS
from gardien.demo.run import approver_lines

ROOT = Path(__file__).resolve().parents[2]


def test_approver_lines_name_every_user_password_and_seat() -> None:
    config = yaml.safe_load((ROOT / "include" / "config" / "gardien.yaml").read_text())
    lines = {line.split()[0]: line for line in approver_lines(config, requester="parametreur")}
    assert set(lines) == set(DEMO_USERS)
    for user, (_, password) in DEMO_USERS.items():
        assert f"password {password} " in lines[user] + " "
    assert lines["pharma.chef"].endswith("can fill approve_pharmaciens")
    assert lines["rssi"].endswith("can fill approve_securite")
    assert lines["chef.projet"].endswith("can fill one of approve_cab_1, approve_cab_2")
    assert "may not approve" in lines["parametreur"]
    assert lines["auditeur"].endswith("fills no seat")


def test_demo_airflow_listens_on_localhost_only(tmp_path: Path) -> None:
    from gardien.demo.airflow_local import base_settings

    settings = base_settings(
        tmp_path, "postgresql://postgres@127.0.0.1:5432/postgres", port=8123, home=tmp_path, metadata_db="m"
    )
    assert settings["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert settings["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST"] == "127.0.0.1"
