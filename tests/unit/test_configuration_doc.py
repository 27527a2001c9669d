"""docs/configuration.md names every key of the configuration models and of suite files (no drift)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from gardien import config
from gardien.calendar import config as calendar_config
from gardien.notify import settings as notify_settings
from gardien.policy import config as policy_config
from gardien.validation import settings, suites

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
MODELS = [
    config.EnvironmentConfig,
    config.LedgerConfig,
    config.CatalogConfig,
    config.TableConfig,
    config.SoftDelete,
    config.SoftDeletePolicy,
    config.ScopeCondition,
    config.LogicalReference,
    config.ReferenceTarget,
    config.ExternalValues,
    config.ExternalTable,
    config.Retire,
    config.RetirePolicy,
    config.OnInsertValue,
    calendar_config.CalendarConfig,
    calendar_config.RecurringWindowConfig,
    calendar_config.OneOffWindowConfig,
    calendar_config.FreezeConfig,
    calendar_config.PublicHolidaysConfig,
    policy_config.ApprovalPolicyConfig,
    policy_config.StageRuleConfig,
    policy_config.RoutingRuleConfig,
    policy_config.EmergencyRuleConfig,
    notify_settings.NotificationSettings,
    notify_settings.SlackSettings,
]


def _keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items() if not f.exclude]


def _documented(key: str) -> bool:
    # as a YAML key (``key:``, in a block or a flow mapping) or as a code span in the prose or a table
    return bool(re.search(rf"(^|[\s{{,]){re.escape(key)}:", DOC, re.MULTILINE)) or f"`{key}`" in DOC


@pytest.mark.parametrize(
    "key",
    sorted(
        {k for m in MODELS for k in _keys(m)}
        | set(settings._KEYS)
        | set(settings._BLAST_KEYS)
        | {p for required, optional in suites.HAND_KINDS.values() for p in required | optional}
        | set(suites.HAND_KINDS)
        | set(suites._ENTRY_KEYS)
        | {"table", "expectations", "description"}
        | {"name", "sql"}  # smoke_probes entries (gardien.validation.probes)
    ),
)
def test_configuration_doc_names_every_key(key: str) -> None:
    assert _documented(key), f"docs/configuration.md does not document the key {key!r}; add it there"


def test_configuration_doc_names_every_top_level_section() -> None:
    for section in config.GardienConfig.model_fields:
        if section != "source_path":
            assert f"`{section}`" in DOC, section
