"""The one error hierarchy of Gardien, with the CLI exit code each error maps to."""

from __future__ import annotations


class GardienError(Exception):
    """Base of every error Gardien raises on purpose. The message names the problem and the fix."""

    exit_code: int = 1


class UsageError(GardienError):
    """The command line or an argument is wrong."""

    exit_code = 2


class ConfigurationError(GardienError):
    """The YAML configuration, the catalog or a suite is invalid, or does not match the databases."""

    exit_code = 3


class EnvironmentUnavailableError(GardienError):
    """A database or service cannot be reached."""

    exit_code = 4


class ChangesetError(GardienError):
    """A changeset is malformed, tampered with, made for another catalog, or cannot be built."""

    exit_code = 5


class SourceDataError(ChangesetError):
    """The source data is unfit to be carried (NULL or duplicate natural keys, dangling references)."""


class ConflictError(GardienError):
    """The target changed since capture on a field the changeset also changes (three-way check)."""

    exit_code = 6


class ValidationFailedError(GardienError):
    """Expectations failed on the state the target would have (or has) after the release."""

    exit_code = 7


class ApprovalError(GardienError):
    """An approval was refused by policy (self-approval, not assigned, stale changeset hash, ...)."""

    exit_code = 8


class DeploymentError(GardienError):
    """A deployment could not be applied (lock timeout, statement timeout, database refusal)."""

    exit_code = 9


class RollbackError(GardienError):
    """A rollback was refused or could not be proven; the message says whether manual repair is needed.

    ``changed`` False: nothing was changed on the target, it still holds the deployment (refused before
    writing — a later edit, a later deployment, a lock, a lost connection before COMMIT — or written and
    undone); None: not known (e.g. connection lost during COMMIT, outcome in doubt). ``proof_failed``: the
    restoration was written and its proof failed (manual repair needed). ``later_edits``: the later edits of
    production that refused it, one dict per field (table, key, field, after, now).
    """

    exit_code = 10

    def __init__(
        self,
        message: str,
        *,
        changed: bool | None = None,
        proof_failed: bool = False,
        later_edits: tuple[dict, ...] = (),
    ) -> None:
        super().__init__(message)
        self.changed = changed
        self.proof_failed = proof_failed
        self.later_edits = later_edits

    @property
    def refused(self) -> bool:
        """Refused with nothing written and no failed proof: the deployment is still in effect, no repair."""
        return self.changed is False and not self.proof_failed


class LedgerError(GardienError):
    """The audit ledger is unreachable, inconsistent, or its hash chain is broken."""

    exit_code = 11


class AuthenticationError(GardienError):
    """Airflow refused the credentials (wrong user name or password): nothing was answered."""

    exit_code = 12
