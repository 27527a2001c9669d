"""Human-in-the-loop approval glue: one Airflow Required Action per approval seat, enforced by gardien.policy."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import Context, Param
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import AirflowFailException

from gardien.airflow.answer_recorder import (
    LedgerOpener,
    answer_already_given,
    config_file,
    ledger_from_config,
    record_task_answer,
    seat_request,
)
from gardien.errors import ApprovalError, ConfigurationError
from gardien.ledger import answers as seat_answers
from gardien.policy import (
    ApprovalPolicy,
    ApprovalVote,
    Requirement,
    check_vote,
    parse_policy,
    requirement_for,
)

PolicyLoader = Callable[[], ApprovalPolicy]


@dataclass(frozen=True, slots=True)
class ReleaseFacts:
    """What the approver approves: read at request time and again when the answer arrives."""

    release: str
    changeset_id: str
    tables_touched: tuple[str, ...]
    requested_by: str
    emergency: bool = False
    reason: str | None = None
    retired: tuple[str, ...] = ()  # "table key: retired (reason: ...)" for rows the changeset retires


ReleaseFactsSource = Callable[[Context], ReleaseFacts]
MIN_SEAT_RETRIES = 3  # Airflow can lose a try of a seat to its pause race, more than once under load


def facts_from_conf(context: Context) -> ReleaseFacts:
    """Default source: the DAG run's conf (`release`, `changeset_id`, `requested_by`, `tables_touched`, ...).

    A release DAG that keeps changesets in the ledger passes its own source reading the ledger, so the
    "current" changeset at answer time is the ledger's, not what the run was started with.
    """
    conf: Mapping[str, Any] = context["dag_run"].conf or {}
    missing = [k for k in ("release", "changeset_id", "requested_by") if not conf.get(k)]
    if missing:
        raise ApprovalError(
            f"the run conf lacks {', '.join(missing)}; trigger the release with "
            "{'release': ..., 'changeset_id': ..., 'requested_by': ..., 'tables_touched': [...]}"
        )
    return ReleaseFacts(
        release=str(conf["release"]),
        changeset_id=str(conf["changeset_id"]),
        tables_touched=tuple(conf.get("tables_touched") or ()),
        requested_by=str(conf["requested_by"]),
        emergency=bool(conf.get("emergency", False)),
        reason=conf.get("reason"),
    )


def policy_from_yaml(path: str | Path | None = None) -> PolicyLoader:
    """A loader reading `approvals` from gardien.yaml when called (at run time, never at DAG parse).

    `path` defaults to $GARDIEN_CONFIG, else include/config/gardien.yaml beside the package.
    """

    def load() -> ApprovalPolicy:
        import yaml  # run time only: DAG files stay cheap to parse

        where = config_file(path)
        try:
            raw = yaml.safe_load(where.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the configuration {where}: {exc}; set GARDIEN_CONFIG"
            ) from exc
        tables = [t.get("name") for t in (raw.get("catalog") or {}).get("tables", [])] or None
        return parse_policy(raw.get("approvals"), source=str(where.name), known_tables=tables)

    return load


def review_url(*, base_url: str, release_id: str) -> str:
    """The board's review page of a release (what the approval request links to)."""
    return f"{base_url.rstrip('/')}/gardien/releases/{quote(release_id, safe='')}/review"


def airflow_base_url() -> str | None:
    """Airflow's `[api] base_url` (the demo sets it), or None when unset."""
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback=None) or None


def required_action_url(*, base_url: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """Link to the Required Action page of one approval task (what Slack messages point to)."""
    # Same path as HITLOperator.generate_link_to_ui (run ids keep their ':' and '+'), without needing a task.
    path = "/".join(quote(p, safe=":+@~") for p in ("dags", dag_id, "runs", run_id, "tasks", task_id))
    return f"{base_url.rstrip('/')}/{path}/required_actions?{urlencode({'map_index': map_index})}"


def required_action_link(context: Context, *, base_url: str | None = None) -> str:
    """Required Action link of the HITL task running in `context` (base_url defaults to [api] base_url)."""
    return HITLOperator.generate_link_to_ui_from_context(context=context, base_url=base_url)


class GardienApprovalOperator(ApprovalOperator):
    """Collect one approval seat of a release; assigned users are computed from the policy at run time.

    Seat `seat_index` of the requirement (see gardien.policy.Requirement) is offered to its candidates minus
    the requester(s) (the run conf's `requested_by` and the user who triggered the run) and minus whoever
    approved `earlier_seats`. The answer is checked again on resume (defence in depth, and the changeset
    may have changed meanwhile). Reject, timeout, a stale changeset or a refused approver fail the task
    (no retry) and record why in the XCom key ``rejection``. A seat the release does not need succeeds at
    once with ``{"required": False}``.

    No answer is lost (Airflow 3.3.2 can lose one given while the task pauses): the request is recorded in
    the ledger before Airflow shows it, the API server records each answer when it accepts it (see
    gardien.airflow.answer_recorder), and a retried seat resumes from an answer already given (the ledger's,
    else Airflow's own row of the previous try) instead of asking again.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "environment")

    def __init__(
        self,
        *,
        seat_index: int,
        environment: str,
        policy: PolicyLoader | None = None,
        release_facts: ReleaseFactsSource = facts_from_conf,
        earlier_seats: Sequence[str] = (),
        ledger: LedgerOpener | None = None,
        review_base_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        if seat_index < 0:
            raise ValueError(f"seat_index must be >= 0 (got {seat_index})")
        kwargs.setdefault("subject", f"Gardien approval, seat {seat_index + 1}")
        # DAG-level params arrive here through default arguments; the approval form shows only its own fields.
        kwargs.pop("params", None)
        # Decisions fail with AirflowFailException (never retried); retries only ever replay a seat that Airflow
        # lost (its pause race, an API error): each such retry resumes from the answer already given.
        kwargs["retries"] = max(int(kwargs.get("retries") or 0), MIN_SEAT_RETRIES)
        # Reject as the default answer: the scheduler's timeout sweep answers with it (timeout = rejection).
        super().__init__(defaults=[self.REJECT], params=_form(""), fail_on_reject=False, **kwargs)
        self.seat_index = seat_index
        self.environment = environment
        self.policy = policy or policy_from_yaml()
        self.release_facts = release_facts
        self.earlier_seats = tuple(earlier_seats)
        self.ledger = ledger or ledger_from_config()
        self.review_base_url = review_base_url

    # --- request --------------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        facts = self.release_facts(context)
        policy = self.policy()
        requirement = self._requirement(policy, facts, context)
        if self.seat_index >= len(requirement.seats):
            self.log.info(
                "Seat %d not required: %s needs %d approval(s)",
                self.seat_index + 1,
                self.environment,
                len(requirement.seats),
            )
            return {"seat": self.seat_index, "required": False, "changeset_id": facts.changeset_id}
        seat = requirement.seats[self.seat_index]
        taken = self._earlier_approvers(context)
        users = sorted(seat.candidates - taken)
        request = seat_request(
            context["ti"],
            release_id=facts.release,
            changeset_id=facts.changeset_id,
            seat=self.seat_index,
            role=seat.label,
            assigned=users,
        )
        given = answer_already_given(self.ledger, context, request)
        if given is not None:
            self.log.info(
                "Seat %d: %s already answered at %s; not asking again",
                self.seat_index + 1,
                given.responder,
                given.responded_at.isoformat(),
            )
            self.params = _form(facts.changeset_id)
            return self._decide(context, facts, given.event_payload(), request=request)
        if not users:
            self._fail(
                context,
                facts,
                by=None,
                reason=f"{seat.title} cannot be filled: its candidates {', '.join(sorted(seat.candidates))} "
                f"already approved earlier seats or requested the release",
            )
        self.assigned_users = [{"id": u, "name": u} for u in users]
        self.response_timeout = policy.timeout
        self.subject = (
            f"[{self.environment}] Release {facts.release}: {seat.title}, changeset {facts.changeset_id[:12]}"
        )
        self.body = _body(
            facts,
            requirement,
            seat_index=self.seat_index,
            assigned=users,
            review=self._review_link(facts.release),
        )
        # A fresh form: Airflow writes the run conf's values into the task's params of the same name (the
        # requester's `reason`), which would pre-fill the approver's form with someone else's words. Only the
        # changeset is pre-filled, so the answer carries the hash the approver saw (UI and CLI send it back).
        self.params = _form(facts.changeset_id)
        self.hitl_summary_extra.update(
            {"release": facts.release, "changeset_id": facts.changeset_id, "seat": self.seat_index}
        )
        # Recorded before Airflow shows the request: the API server ties each answer to this seat through it.
        with self.ledger() as conn:
            seat_answers.record_request(conn, request, at=datetime.now(UTC))
        return super().execute(context)

    # --- answer ---------------------------------------------------------------------------------------
    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        facts = self.release_facts(context)
        if event.get("error_type") == "timeout":
            self._fail(context, facts, by=None, reason="timeout: no answer before the approval deadline")
        return self._decide(context, facts, event, request=None)

    def _decide(
        self,
        context: Context,
        facts: ReleaseFacts,
        event: dict[str, Any],
        *,
        request: seat_answers.SeatRequest | None,
    ) -> Any:
        try:  # validates the chosen options and the params form; skips ApprovalOperator's skip-on-reject
            answer = HITLOperator.execute_complete(self, context, event)
        except ValueError as exc:
            self._fail(context, facts, by=None, reason=f"invalid answer: {exc}")
        user = (answer.get("responded_by_user") or {}).get("id")
        params_input = answer.get("params_input") or {}
        if event.get("timedout") or user is None:
            self._fail(context, facts, by=None, reason="timeout: no answer before the approval deadline")
        request = record_task_answer(self.ledger, context["ti"], answer, request=request)
        answered = {
            "responded_at": _iso(answer.get("responded_at")),
            "role": request.role if request is not None else None,
        }
        if answer["chosen_options"] != [self.APPROVE]:
            self._fail(
                context,
                facts,
                by=user,
                reason=str(params_input.get("reason") or "").strip() or "no reason given",
                **answered,
            )

        requirement = self._requirement(self.policy(), facts, context)
        vote = ApprovalVote(user=user, approve=True, changeset_id=str(params_input.get("changeset_id") or ""))
        try:
            if self.seat_index >= len(requirement.seats):
                raise ApprovalError(
                    f"{self.environment} no longer needs seat {self.seat_index + 1} (policy or changeset changed); "
                    "restart the approvals"
                )
            check_vote(
                requirement,
                vote,
                changeset_id=facts.changeset_id,
                seat=requirement.seats[self.seat_index],
                already_approved=self._earlier_approvers(context),
            )
        except ApprovalError as exc:  # the person chose Approve; the policy refused it (not their rejection)
            self._fail(context, facts, by=user, reason=f"approval refused: {exc}", refused=True, **answered)
        self.log.info(
            "Seat %d approved by %s for changeset %s", self.seat_index + 1, user, facts.changeset_id
        )
        return {
            **answer,
            "responded_at": _iso(answer.get("responded_at")),
            "approved": True,
            "seat": self.seat_index,
            "role": requirement.seats[self.seat_index].label,
            "changeset_id": facts.changeset_id,
            "release": facts.release,
        }

    def _review_link(self, release_id: str) -> str | None:
        base = self.review_base_url or airflow_base_url()
        return review_url(base_url=base, release_id=release_id) if base else None

    # --- helpers --------------------------------------------------------------------------------------
    def _requirement(self, policy: ApprovalPolicy, facts: ReleaseFacts, context: Context) -> Requirement:
        triggered_by = getattr(context["dag_run"], "triggering_user_name", None)
        requesters = {facts.requested_by, *([triggered_by] if triggered_by else [])}
        try:
            return requirement_for(
                policy,
                environment=self.environment,
                tables_touched=facts.tables_touched,
                requester=requesters,
                emergency=facts.emergency,
                reason=facts.reason,
            )
        except ApprovalError as exc:
            self._fail(context, facts, by=None, reason=str(exc))

    def _earlier_approvers(self, context: Context) -> set[str]:
        if not self.earlier_seats:
            return set()
        pulled = context["ti"].xcom_pull(task_ids=list(self.earlier_seats))
        values = pulled if isinstance(pulled, list) else [pulled]
        return {
            v["responded_by_user"]["id"]
            for v in values
            if isinstance(v, Mapping) and v.get("approved") and v.get("responded_by_user")
        }

    def _fail(
        self,
        context: Context,
        facts: ReleaseFacts,
        *,
        by: str | None,
        reason: str,
        responded_at: str | None = None,
        role: str | None = None,
        refused: bool = False,
    ) -> NoReturn:
        # Recorded before failing so the ledger, the report and Slack can say who ended the release and why.
        context["ti"].xcom_push(
            key="rejection",
            value={
                "release": facts.release,
                "changeset_id": facts.changeset_id,
                "seat": self.seat_index,
                "by": by,
                "reason": reason,
                **({"responded_at": responded_at, "role": role} if by else {}),
                # ``refused``: ``by`` chose Approve and the seat refused it (stale changeset, four-eyes...):
                # the release ends, but no "rejected" decision is recorded in that person's name.
                **({"refused": True} if refused else {}),
            },
        )
        who = f" by {by}" if by else ""
        # AirflowFailException: a rejection is a decision, not a transient error to retry.
        raise AirflowFailException(
            f"release {facts.release} rejected{who} at seat {self.seat_index + 1}: {reason}"
        )


def _form(changeset_id: str) -> ParamsDict:
    """The approver's form: the changeset they approve (pre-filled) and their own, empty, reason."""
    form = {
        "changeset_id": Param(changeset_id, type="string", description="Changeset hash you are approving"),
        # Optional (null allowed): a typed field is required by Airflow's form, and an approver must be able to
        # approve without a comment (the Approve button stays disabled while a required field is empty).
        "reason": Param(
            None, type=["null", "string"], description="Your comment (optional; mandatory when rejecting)"
        ),
    }
    return ParamsDict(form)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _body(
    facts: ReleaseFacts,
    requirement: Requirement,
    *,
    seat_index: int,
    assigned: Sequence[str],
    review: str | None = None,
) -> str:
    seat = requirement.seats[seat_index]
    tables = ", ".join(sorted(facts.tables_touched)) or "(none)"
    lines = [
        f"**Release** `{facts.release}` to **{requirement.environment}**"
        + (" — **EMERGENCY**" if facts.emergency else ""),
        f"**Changeset** `{facts.changeset_id}` (your approval is bound to this hash; if it changes, it is void)",
        # The release board's review page (plugins/gardien_plugin.py), this seat's own changes first.
        f"**Review the changes**: [{facts.release} — review for {seat.label}]"
        f"(/gardien/releases/{quote(facts.release, safe='')}/review?{urlencode({'seat': seat.label})})",
        f"**Tables touched**: {tables}",
        f"**Requested by**: {facts.requested_by} (cannot approve)",
        f"**This seat**: {seat.title}, {seat.why}; {seat_index + 1} of {len(requirement.seats)} approvals",
        f"**Assigned**: {', '.join(assigned)}",
    ]
    if facts.reason:
        lines.append(f"**Reason given by the requester**: {facts.reason}")
    if facts.retired:
        shown = "; ".join(facts.retired[:20]) + (
            f"; ... and {len(facts.retired) - 20} more" if len(facts.retired) > 20 else ""
        )
        lines.append(f"**Retired (kept, not deleted)**: {shown}")
    if review:
        lines.append(f"**Review the changes**: [{review}]({review})")
    lines.append(
        "Reject with a reason in the `reason` field; no answer before the deadline counts as a rejection."
    )
    # Airflow 3.3 has no way to withdraw a Required Action: once the task is skipped its request stays listed.
    lines.append(
        "If the release ends before this seat is answered (another seat rejected it, or it failed), this request "
        "is withdrawn and no answer is needed: Airflow keeps listing it under Required Actions, as “No Response "
        "Received”, and the release page marks it withdrawn."
    )
    return "\n\n".join(lines)
