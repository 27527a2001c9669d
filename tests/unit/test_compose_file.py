"""docker-compose.yml and the Dockerfile: they parse, and their defaults are production-safe.

(Running them is `make compose-check`, never part of `make test`: no container engine is needed here.)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
LONG_RUNNING = [name for name in SERVICES if name != "airflow-init"]
SECRET_VARS = (
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "POSTGRES_PASSWORD",
    "AIRFLOW_DB_PASSWORD",
    "GARDIEN_DB_PASSWORD",
    "LEDGER_OWNER_PASSWORD",
    "LEDGER_WRITER_PASSWORD",
    "REDIS_PASSWORD",
    "AIRFLOW_PASSWORDS_FILE",
)
_REF = re.compile(r"\$\{([A-Z0-9_]+)(:[-?])?([^}]*)\}")

sys.path.insert(0, str(ROOT / "deploy"))
import compose_images  # noqa: E402


def test_the_stack_has_every_service_of_airflow3s_layout():
    assert set(SERVICES) == {
        "postgres",
        "redis",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-init",
    }
    assert SERVICES["airflow-worker"]["deploy"]["replicas"] == "${GARDIEN_WORKERS:-2}"


@pytest.mark.parametrize("name", SECRET_VARS)
def test_every_secret_is_required_never_defaulted(name):
    refs = [m for m in _REF.finditer(COMPOSE_TEXT) if m.group(1) == name]
    assert refs, f"{name} is not used"
    for ref in refs:
        assert ref.group(2) == ":?" and ref.group(3).strip(), (
            f"{ref.group(0)} must be ${{{name}:?explanation}}"
        )


def test_no_literal_password_fernet_key_or_secret_in_the_file():
    common = SERVICES["airflow-apiserver"]["environment"]
    for key, value in common.items():
        if key.endswith(
            ("_PASSWORD", "SECRET", "SECRET_KEY", "FERNET_KEY", "_CONN", "_DSN", "BROKER_URL", "BACKEND")
        ):
            assert "${" in str(value), f"{key} has a literal value"
    assert not (ROOT / "docs" / "compose" / "passwords.json").exists()


def test_api_server_published_on_loopback_unless_configured():
    (port,) = SERVICES["airflow-apiserver"]["ports"]
    assert port.startswith("${AIRFLOW_API_BIND:-127.0.0.1}:")
    assert all("ports" not in SERVICES[s] for s in SERVICES if s != "airflow-apiserver")


def test_release_steps_reach_the_ledger_as_its_writer_and_only_init_as_its_owner():
    for name in LONG_RUNNING:
        env = SERVICES[name].get("environment", {})
        assert "gardien_ledger_owner" not in str(env) and "LEDGER_OWNER" not in str(env) or name == "postgres"
    assert "gardien_ledger_app:" in SERVICES["airflow-scheduler"]["environment"]["GARDIEN_LEDGER_DSN"]
    assert "gardien_ledger_owner:" in SERVICES["airflow-init"]["environment"]["GARDIEN_LEDGER_OWNER_DSN"]
    config = yaml.safe_load((ROOT / "include" / "config" / "gardien.yaml").read_text())
    assert config["ledger"]["dsn"].startswith("${GARDIEN_LEDGER_DSN:-")


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_healthcheck_restart_and_limits(name):
    service = SERVICES[name]
    assert service["healthcheck"]["test"]
    assert service["restart"] == "always"
    assert set(service["ulimits"]) == {"nofile", "nproc"}


def test_images_are_parameters_defaulting_to_the_official_ones():
    assert SERVICES["postgres"]["image"] == "${POSTGRES_IMAGE:-postgres:15}"
    assert SERVICES["redis"]["image"] == "${REDIS_IMAGE:-redis:7.2-bookworm}"
    args = SERVICES["airflow-scheduler"]["build"]["args"]
    assert args["AIRFLOW_BASE_IMAGE"] == "${AIRFLOW_IMAGE:-apache/airflow:3.3.2-python3.11}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2-python3.11" in dockerfile


def test_images_run_as_non_root_and_bake_no_dsn():
    assert SERVICES["airflow-init"]["user"] == "50000:0"
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.M)
    assert users[-1] == "airflow"
    assert "postgresql://" not in dockerfile and "PG_DSN" not in dockerfile
    for name in ("postgres", "redis"):
        text = (ROOT / "deploy" / "images" / f"{name}.Containerfile").read_text()
        assert re.findall(r"^USER (\S+)", text, flags=re.M)[-1] == name


def test_volumes_keep_database_and_release_artifacts():
    assert {"postgres-data", "gardien-state"} <= set(COMPOSE["volumes"])
    assert "postgres-data:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    assert "gardien-state:/opt/gardien/state" in SERVICES["airflow-worker"]["volumes"]


def test_env_example_lists_every_secret_empty():
    text = (ROOT / ".env.example").read_text()
    for name in SECRET_VARS:
        assert re.search(rf"^{name}=$", text, flags=re.M), name


def test_build_settings_come_from_the_environment_and_leave_local_indexes_out(tmp_path, monkeypatch):
    monkeypatch.setattr(
        compose_images, "_pip_config", lambda: {"extra-index-url": "file:///x https://b/simple"}
    )
    cert = tmp_path / "ca.pem"
    cert.write_text("pem")
    args, notes = compose_images.pip_build_settings(
        {"PIP_INDEX_URL": "https://a/simple", "PIP_CERT": str(cert)}
    )
    assert "PIP_INDEX_URL=https://a/simple" in args
    assert "PIP_EXTRA_INDEX_URL=https://b/simple" in args
    assert f"{cert}:{compose_images.BUILD_CA}:ro" in args
    assert any("file:" in n for n in notes)


def test_debian_mirror_read_from_apt_sources(tmp_path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n")
    assert compose_images.debian_mirror([deb822]) == "http://mirror.example/debian"
    legacy = tmp_path / "sources.list"
    legacy.write_text("# x\ndeb [arch=amd64] http://m2.example/debian bookworm main\n")
    assert compose_images.debian_mirror([legacy]) == "http://m2.example/debian"
    assert compose_images.debian_mirror([tmp_path / "missing"]) is None


def test_a_passed_run_records_each_steps_figures():
    import compose_check

    line = compose_check.summary(
        [
            "images (local, from Debian) 1.1 min",
            "release 1",
            "RELEASED in 97 s",
            "release 2",
            "ROLLED_BACK in 9 s",
        ]
    )
    assert line.startswith(
        "images (local, from Debian) 1.1 min; release 1 RELEASED in 97 s; release 2 ROLLED_BACK"
    )
    assert "load average at the end" in line
