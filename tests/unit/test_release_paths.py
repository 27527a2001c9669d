"""Release path parsing: good paths, and each bad entry named with its fix."""

from __future__ import annotations

import pytest

from gardien.errors import ConfigurationError
from gardien.release.paths import parse_release_paths

ENVS = ["qualif", "preprod", "prod", "prod_b"]


def test_parse_release_paths_two_stages_ordered() -> None:
    paths = parse_release_paths(
        {
            "standard": {
                "source": "qualif",
                "stages": [
                    {"name": "preprod", "targets": ["preprod"]},
                    {"name": "prod", "targets": ["prod", "prod_b"]},
                ],
            }
        },
        environments=ENVS,
        source="g.yaml",
    )
    p = paths["standard"]
    assert [s.name for s in p.stages] == ["preprod", "prod"]
    assert p.final_targets == ("prod", "prod_b")
    assert p.all_targets == ("preprod", "prod", "prod_b")
    assert p.rollback == "stage"


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (
            {"standard": {"source": "qualif", "stages": []}},
            r"release_paths\.standard\.stages: .*at least one stage",
        ),
        ({"standard": {"source": "qualif"}}, r"release_paths\.standard\.stages"),
        (
            {"standard": {"source": "nope", "stages": [{"name": "a", "targets": ["prod"]}]}},
            r"standard\.source: unknown environment 'nope'",
        ),
        (
            {"standard": {"source": "qualif", "stages": [{"name": "a", "targets": ["prood"]}]}},
            r"stages\[0\] \(a\): unknown environment 'prood'; known: preprod, prod, prod_b, qualif",
        ),
        (
            {"standard": {"source": "qualif", "stages": [{"name": "a", "targets": ["qualif"]}]}},
            r"is the source",
        ),
        (
            {
                "standard": {
                    "source": "qualif",
                    "stages": [{"name": "a", "targets": ["prod"]}, {"name": "b", "targets": ["prod"]}],
                }
            },
            r"earlier stage",
        ),
        (
            {
                "standard": {
                    "source": "qualif",
                    "stages": [{"name": "a", "targets": ["prod"]}],
                    "rollback": "some",
                }
            },
            r"standard\.rollback",
        ),
        (
            {"Bad-Name": {"source": "qualif", "stages": [{"name": "a", "targets": ["prod"]}]}},
            r"becomes a DAG id",
        ),
        (
            {"standard": {"source": "qualif", "stages": [{"name": "a", "targets": ["prod"], "extra": 1}]}},
            r"stages\.0\.extra",
        ),
    ],
    ids=[
        "no-stages",
        "stages-missing",
        "unknown-source",
        "unknown-target",
        "target-is-source",
        "target-twice",
        "bad-rollback-mode",
        "bad-name",
        "unknown-key",
    ],
)
def test_parse_release_paths_bad_entry_names_it(raw: dict, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        parse_release_paths(raw, environments=ENVS, source="g.yaml")


def test_parse_release_paths_bake_period_and_stage_lookup() -> None:
    paths = parse_release_paths(
        {
            "standard": {
                "source": "qualif",
                "stages": [
                    {"name": "preprod", "targets": ["preprod"]},
                    {
                        "name": "prod",
                        "targets": ["prod"],
                        "bake_minutes": 0.5,
                        "bake_probe_every_seconds": 10,
                    },
                ],
            }
        },
        environments=ENVS,
        source="g.yaml",
    )
    p = paths["standard"]
    assert p.stage("preprod").bake_minutes == 0
    assert (p.stage("prod").bake_minutes, p.stage("prod").bake_probe_every_seconds) == (0.5, 10)
    assert p.required_window_minutes == 15.5  # a deployment starts only with the margin + every bake left
    with pytest.raises(ConfigurationError, match="has no stage 'qa'; stages: preprod, prod"):
        p.stage("qa")


@pytest.mark.parametrize(
    ("stage", "match"),
    [
        ({"bake_minutes": -1}, r"stages\.0\.bake_minutes: .*greater than or equal to 0"),
        ({"bake_minutes": 5, "bake_probe_every_seconds": 0}, r"stages\.0\.bake_probe_every_seconds"),
        ({"bake_minutes": "long"}, r"stages\.0\.bake_minutes: .*valid number"),
    ],
)
def test_parse_release_paths_bad_bake_named(stage: dict, match: str) -> None:
    raw = {"standard": {"source": "qualif", "stages": [{"name": "prod", "targets": ["prod"], **stage}]}}
    with pytest.raises(ConfigurationError, match=match):
        parse_release_paths(raw, environments=ENVS, source="g.yaml")
