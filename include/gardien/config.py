"""The Gardien YAML configuration: pydantic models, ``${VAR}`` substitution, clear errors, environments."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gardien import pg
from gardien.errors import ConfigurationError

DEFAULT_CONFIG_PATH = Path("include/config/gardien.yaml")
_VAR_START_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(\}|:-)")
_IDENT_MAX_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL would silently truncate a longer name


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_identifier(value: str | None) -> str | None:
    if value is None:  # an optional name left out
        return None
    # Any name PostgreSQL accepts (mixed case, spaces, reserved words, quotes): it is written exactly as the
    # database spells it and reaches SQL only through psycopg2.sql.Identifier, which quotes it.
    if not value or "\x00" in value:
        raise ValueError(
            f"{value!r} is not a PostgreSQL identifier; write the name exactly as the database has it"
        )
    if len(value.encode("utf-8")) > _IDENT_MAX_BYTES:
        raise ValueError(
            f"{value!r} is longer than PostgreSQL's {_IDENT_MAX_BYTES} bytes; the database would have truncated it"
        )
    return value


def _check_dsn(value: str) -> str:
    try:
        # A DSN libpq cannot parse is refused when first used (gardien.pg.connect), naming it: a section
        # nobody uses then does not stop every command.
        return pg.check_dsn(value, where="dsn", parse=False)
    except ConfigurationError as exc:
        raise ValueError(str(exc).removeprefix("dsn: ").rstrip(".")) from None


class EnvironmentConfig(_Model):
    dsn: str
    database: str | None = None
    role: str | None = None
    production: bool = False

    _dsn = field_validator("dsn")(_check_dsn)


class LedgerConfig(_Model):
    dsn: str
    database: str | None = None

    _dsn = field_validator("dsn")(_check_dsn)


class SoftDelete(_Model):
    column: str
    value: Any

    _ident = field_validator("column")(_check_identifier)


class SoftDeletePolicy(_Model):
    soft: SoftDelete


class Retire(_Model):
    """A row retired in place (OpenMRS ``retired``): it stays managed, its fields are still compared."""

    column: str
    value: Any = True
    reason: str | None = None  # the column holding why it was retired (shown in the report and approvals)

    _ident = field_validator("column", "reason")(_check_identifier)


class RetirePolicy(_Model):
    retire: Retire


class OnInsertValue(_Model):
    """A literal written into an ignored column of every row Gardien inserts (cast to the column's type)."""

    value: Any


class ScopeCondition(_Model):
    """One structured row filter on a column (never raw SQL)."""

    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    like: str | None = None
    not_like: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ScopeCondition:
        given = [k for k in ("in_", "not_in", "like", "not_like") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of in, not_in, like, not_like")
        return self


class ReferenceTarget(_Model):
    """The referenced side of a logical reference: a managed table and one of its unique column sets."""

    table: str
    columns: list[str] = Field(min_length=1)

    _ident = field_validator("table")(_check_identifier)

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: list[str]) -> list[str]:
        for column in value:
            _check_identifier(column)
        return value


class ExternalTable(_Model):
    """An unmanaged table of the target holding values a reference may name (read only, never carried)."""

    schema_: str = Field(default="public", alias="schema")
    name: str
    column: str

    _ident = field_validator("schema_", "name", "column")(_check_identifier)


class ExternalValues(_Model):
    """Where else a referenced value may live, outside the managed scope: any one of these is enough."""

    values: list[str] = []  # an allow-list
    table: ExternalTable | None = None
    pattern: str | None = None  # a PostgreSQL/Python regular expression the whole value must match

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern {value!r} is not a regular expression ({exc})") from None
        return value

    @model_validator(mode="after")
    def _something(self) -> ExternalValues:
        if not self.values and self.table is None and self.pattern is None:
            raise ValueError("give at least one of values, table, pattern")
        return self

    def allows(self, value: str) -> str | None:
        """Which rule allows ``value`` without a database ("allow-list", "pattern"), or None."""
        if value in self.values:
            return "allow-list"
        if self.pattern is not None and re.fullmatch(self.pattern, value):
            return "pattern"
        return None


class LogicalReference(_Model):
    column: str
    references: str | ReferenceTarget
    separator: str | None = None
    # several target columns: the referencing value is their texts joined by this (e.g. "SOURCE:code")
    join: str | None = None
    external: ExternalValues | None = None

    _ident = field_validator("column")(_check_identifier)

    @field_validator("references")
    @classmethod
    def _table_dot_column(cls, value: str | ReferenceTarget) -> str | ReferenceTarget:
        if isinstance(value, ReferenceTarget):
            return value
        # Split at the last dot: a catalog table name may itself hold dots, a referenced column may not here.
        table, dot, column = value.rpartition(".")
        if not dot:
            raise ValueError(f"{value!r} must be written table.column (or {{table: ..., columns: [...]}})")
        _check_identifier(table)
        _check_identifier(column)
        return value

    @model_validator(mode="after")
    def _join_when_composite(self) -> LogicalReference:
        if len(self.target_columns) > 1 and not self.join:
            raise ValueError(
                "a reference to several columns needs join: the text between their values (e.g. ':')"
            )
        if self.join is not None and self.separator is not None and self.join == self.separator:
            raise ValueError("join and separator must differ")
        return self

    @property
    def target_table(self) -> str:
        if isinstance(self.references, ReferenceTarget):
            return self.references.table
        return self.references.rpartition(".")[0]

    @property
    def target_columns(self) -> tuple[str, ...]:
        if isinstance(self.references, ReferenceTarget):
            return tuple(self.references.columns)
        return (self.references.rpartition(".")[2],)

    @property
    def target_column(self) -> str:
        return self.target_columns[0]

    @property
    def label(self) -> str:
        """``table.column`` or ``table.(a, b)`` for messages."""
        cols = self.target_columns
        return f"{self.target_table}.{cols[0] if len(cols) == 1 else '(' + ', '.join(cols) + ')'}"


class TableConfig(_Model):
    name: str  # the catalog's name for the table: changesets, suites, references and approvals use it
    schema_: str | None = Field(default=None, alias="schema")  # default: catalog.schema
    table: str | None = None  # the table's name in the database, when it differs from ``name``
    natural_key: list[str] = Field(min_length=1)
    ignore: list[str] = []
    scope: dict[str, ScopeCondition | str | int | float | bool | None] | None = None
    delete: Literal["hard"] | SoftDeletePolicy | RetirePolicy = "hard"
    logical_references: list[LogicalReference] = []
    # ignored (audit) columns given a value on insert: now (the apply's transaction time), requester (the
    # release's requester) or {value: literal}
    on_insert: dict[str, Literal["now", "requester"] | OnInsertValue] = {}
    frozen: bool = False

    _name = field_validator("name", "schema_", "table")(_check_identifier)

    @field_validator("natural_key", "ignore")
    @classmethod
    def _columns(cls, value: list[str]) -> list[str]:
        for column in value:
            _check_identifier(column)
        if len(set(value)) != len(value):
            raise ValueError(f"columns listed twice in {value}")
        return value

    @field_validator("scope")
    @classmethod
    def _scope_columns(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for column in value or {}:
            _check_identifier(column)
        return value

    @model_validator(mode="after")
    def _key_not_ignored(self) -> TableConfig:
        overlap = sorted(set(self.natural_key) & set(self.ignore))
        if overlap:
            raise ValueError(f"natural key column(s) {overlap} cannot also be ignored")
        if isinstance(self.delete, SoftDeletePolicy) and self.delete.soft.column in self.ignore:
            raise ValueError(f"soft-delete column {self.delete.soft.column!r} cannot be ignored")
        for column in self.on_insert:
            _check_identifier(column)
            if column not in self.ignore:
                raise ValueError(
                    f"on_insert column {column!r} must also be listed under ignore (it is never compared nor "
                    "carried; Gardien only fills it on insert)"
                )
        if self.retire is not None and {self.retire.column, self.retire.reason} & set(self.ignore):
            raise ValueError("the retire column and its reason column cannot be ignored: they are compared")
        return self

    @property
    def soft_delete(self) -> SoftDelete | None:
        return self.delete.soft if isinstance(self.delete, SoftDeletePolicy) else None

    @property
    def retire(self) -> Retire | None:
        """``delete: {retire: ...}``: retired rows stay in the managed scope (not a soft delete)."""
        return self.delete.retire if isinstance(self.delete, RetirePolicy) else None

    @property
    def relname(self) -> str:
        """The table's name in the database."""
        return self.table or self.name


class CatalogConfig(_Model):
    schema_: str = Field(default="public", alias="schema")
    tables: list[TableConfig] = Field(min_length=1)

    _schema = field_validator("schema_")(_check_identifier)

    @model_validator(mode="after")
    def _unique_names(self) -> CatalogConfig:
        names = [t.name for t in self.tables]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(
                f"table(s) {twice} listed more than once; two tables of the same name in two schemas need "
                "distinct catalog names: write e.g. {name: billing_item, schema: billing, table: item}"
            )
        places = [(self.schema_of(t), t.relname) for t in self.tables]
        same = sorted({f"{s}.{r}" for s, r in places if places.count((s, r)) > 1})
        if same:
            raise ValueError(f"table(s) {same} listed more than once under different names")
        return self

    def schema_of(self, table: TableConfig) -> str:
        """The schema holding ``table``: its own ``schema`` or the catalog's."""
        return table.schema_ or self.schema_

    def table(self, name: str) -> TableConfig:
        for table in self.tables:
            if table.name == name:
                return table
        raise ConfigurationError(f"table {name!r} is not in the catalog; add it under catalog.tables.")


Section = dict[str, Any] | list[Any] | None


class GardienConfig(_Model):
    version: Literal[1] = 1
    environments: dict[str, EnvironmentConfig] = {}
    ledger: LedgerConfig | None = None
    catalog: CatalogConfig
    calendar: Section = None
    release_paths: Section = None
    approvals: Section = None
    notifications: Section = None
    validation: Section = None
    smoke_probes: Section = None
    source_path: str | None = Field(default=None, exclude=True)

    @field_validator("environments")
    @classmethod
    def _env_names(cls, value: dict[str, EnvironmentConfig]) -> dict[str, EnvironmentConfig]:
        for name in value:
            if not re.match(r"^[A-Za-z0-9_-]+$", name):
                raise ValueError(f"environment name {name!r} may only hold letters, digits, '-' and '_'")
        return value


@dataclass(frozen=True, slots=True)
class Environment:
    """A resolved target or source: a name (for messages and locks) and a full libpq DSN."""

    name: str
    dsn: str
    production: bool = False


def substitute(value: Any, *, environ: Mapping[str, str], source: str, where: str) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of ``value``.

    Raises ConfigurationError naming the variable, the file and the place when a variable is unset.
    """
    if isinstance(value, str):
        return _expand(value, environ=environ, source=source, where=where)
    if isinstance(value, dict):
        return {
            k: substitute(v, environ=environ, source=source, where=f"{where}.{k}") for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            substitute(v, environ=environ, source=source, where=f"{where}[{i}]") for i, v in enumerate(value)
        ]
    return value


def _expand(text: str, *, environ: Mapping[str, str], source: str, where: str) -> str:
    """``text`` with each ``${VAR}`` / ``${VAR:-default}`` replaced; a default may itself hold ``${...}``
    (``${GARDIEN_LEDGER_DSN:-${GARDIEN_PG_DSN:-...}}``) and is expanded only when used. Values from the
    environment are taken verbatim (never expanded again); text that is not a reference stays as it is."""
    out: list[str] = []
    pos = 0
    while (match := _VAR_START_RE.search(text, pos)) is not None:
        name, after = match.group(1), match.group(2)
        end = match.end() if after == "}" else _closing_brace(text, match.end())
        if end is None:  # unbalanced: not a reference
            out.append(text[pos : match.end()])
            pos = match.end()
            continue
        out.append(text[pos : match.start()])
        if environ.get(name):
            out.append(environ[name])
        elif after == ":-":
            out.append(_expand(text[match.end() : end - 1], environ=environ, source=source, where=where))
        else:
            # Set but empty counts as unset (as the shell's ${VAR:-default} does): an empty user, host or
            # DSN would fall back to libpq's defaults and connect to whatever answers there.
            state = "is set but empty" if name in environ else "is not set"
            raise ConfigurationError(
                f"{source}: {where}: environment variable {name} {state}. "
                f"Export {name} with a value or write ${{{name}:-default}} in the file."
            )
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _closing_brace(text: str, start: int) -> int | None:
    """Index just past the ``}`` closing a reference whose default starts at ``start`` (nested ``${`` count)."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


_FIXES = {
    "extra_forbidden": "Remove it or check its spelling.",
    "missing": "Add it.",
    "literal_error": "Use one of the allowed values.",
    "too_short": "List at least one entry.",
}


_UNION_NOISE = {
    "string_type",
    "int_type",
    "int_from_float",
    "float_type",
    "bool_type",
    "literal_error",
    "model_type",
}


def _loc_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part) in {
            "SoftDeletePolicy",
            "ScopeCondition",
            "ReferenceTarget",
            "str",
            "int",
            "float",
            "bool",
        } or any(ch in str(part) for ch in "[-"):
            continue  # pydantic union branch names say nothing to a YAML author
        else:
            out += ("." if out else "") + (
                "schema" if part == "schema_" else "in" if part == "in_" else str(part)
            )
    return out or "(top level)"


def _rewrite(exc: ValidationError, source: str) -> ConfigurationError:
    errors = [(_loc_text(tuple(e["loc"])), e) for e in exc.errors()]
    # A value matching no branch of a union yields one error per branch; keep the meaningful ones.
    meaningful = {where for where, e in errors if e["type"] not in _UNION_NOISE}
    lines: list[str] = []
    for where, err in errors:
        if err["type"] in _UNION_NOISE and any(m.startswith(where) for m in meaningful):
            continue
        msg = err["msg"].removeprefix("Value error, ")
        line = f"{source}: {where}: {msg}. {_FIXES.get(err['type'], 'Fix this value.')}"
        if line not in lines:
            lines.append(line)
    return ConfigurationError("\n".join(lines))


def parse_config(
    data: Any, *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> GardienConfig:
    """Validate an already-parsed YAML document. See ``load_config``."""
    env = os.environ if environ is None else environ
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{source}: (top level): expected a mapping of sections. Start from the demo file."
        )
    data = dict(data)
    # Only connection sections are substituted here: other sections belong to other modules, which may
    # call ``substitute`` themselves when (and only when) they need their values.
    for section in ("environments", "ledger"):
        if section in data:
            data[section] = substitute(data[section], environ=env, source=source, where=section)
    try:
        return GardienConfig.model_validate({**data, "source_path": source})
    except ValidationError as exc:
        raise _rewrite(exc, source) from None


def load_config(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None) -> GardienConfig:
    """Load and validate the YAML configuration at ``path`` (default: $GARDIEN_CONFIG or the demo file).

    Raises ConfigurationError "<file>: <path.inside.yaml>: <problem>. <fix>" on any problem.
    """
    env = os.environ if environ is None else environ
    target = Path(path or env.get("GARDIEN_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"{target}: cannot read the configuration ({exc.strerror}). "
            "Pass -c PATH or set GARDIEN_CONFIG to an existing file."
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{target}: not valid YAML: {exc}. Fix the syntax at that line.") from exc
    return parse_config(data, source=str(target), environ=env)


def _env_dsn(dsn: str, database: str | None) -> str:
    from gardien.redact import register_dsn

    register_dsn(dsn)  # its password is masked in every message from now on
    return pg.dsn_for_database(dsn, database) if database else dsn


def resolve_environment(cfg: GardienConfig, name_or_uri: str) -> Environment:
    """An environment by configured name, or a plain libpq URI (``postgresql://...``)."""
    if name_or_uri.startswith(("postgresql://", "postgres://")):
        pg.check_dsn(name_or_uri, where="command line")
        return Environment(name=pg.redact(name_or_uri), dsn=name_or_uri)
    env = cfg.environments.get(name_or_uri)
    if env is None:
        known = ", ".join(sorted(cfg.environments)) or "(none configured)"
        raise ConfigurationError(
            f"unknown environment {name_or_uri!r}; known environments: {known}. "
            "Use one of them or a libpq URI such as postgresql://user@host:5432/dbname."
        )
    return Environment(name=name_or_uri, dsn=_env_dsn(env.dsn, env.database), production=env.production)


def ledger_dsn(cfg: GardienConfig) -> str:
    """The ledger's DSN; ConfigurationError when the configuration has no ``ledger`` section."""
    if cfg.ledger is None:
        raise ConfigurationError(f"{cfg.source_path}: ledger: missing. Add a ledger section with a dsn.")
    return _env_dsn(cfg.ledger.dsn, cfg.ledger.database)
