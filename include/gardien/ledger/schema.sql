-- Gardien audit ledger: schema `ledger`, idempotent. Run only by `gardien ledger migrate` (the owner, once per
-- schema version, under an advisory lock: gardien.ledger.migrate); release steps connect as the writer role and
-- never run DDL. The whole file is re-run by each migration, so every statement must be idempotent.
-- Design and the canonical event form: docs/adr/0002-ledger-hash-chain.md.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gardien_ledger_writer') THEN
        CREATE ROLE gardien_ledger_writer NOLOGIN;
    END IF;
EXCEPTION
    -- Roles are cluster-wide: another database's ensure_schema may create it at the same moment.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

CREATE SCHEMA IF NOT EXISTS ledger;

-- One row per migration that changed something: which version (and exact schema text, by digest) is in place.
CREATE TABLE IF NOT EXISTS ledger.schema_versions (
    version integer NOT NULL CHECK (version > 0),
    digest text NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL DEFAULT current_user
);

CREATE TABLE IF NOT EXISTS ledger.changesets (
    id text PRIMARY KEY,
    body text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    -- Content addressing enforced by the database too: no row can hold a body that is not its id's.
    CONSTRAINT changesets_content_address CHECK (id = encode(sha256(convert_to(body, 'UTF8')), 'hex'))
);

CREATE TABLE IF NOT EXISTS ledger.releases (
    id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$'),
    path text[] NOT NULL CHECK (cardinality(path) > 0),
    requested_by text NOT NULL CHECK (requested_by <> ''),
    reason text NOT NULL CHECK (reason <> ''),
    window_start timestamptz,
    window_end timestamptz,
    status text NOT NULL CHECK (status ~ '^[a-z_]+$'),
    changeset_id text REFERENCES ledger.changesets (id),
    created_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CHECK (window_start IS NULL OR window_end IS NULL OR window_end > window_start)
);

CREATE TABLE IF NOT EXISTS ledger.validation_results (
    id bigserial PRIMARY KEY,
    release_id text NOT NULL REFERENCES ledger.releases (id),
    changeset_id text NOT NULL REFERENCES ledger.changesets (id),
    environment text NOT NULL,
    passed boolean NOT NULL,
    report jsonb NOT NULL,
    actor text NOT NULL,
    at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS ledger.approvals (
    id bigserial PRIMARY KEY,
    release_id text NOT NULL REFERENCES ledger.releases (id),
    changeset_id text NOT NULL REFERENCES ledger.changesets (id),
    approver text NOT NULL CHECK (approver <> ''),
    decision text NOT NULL CHECK (decision IN ('approved', 'rejected')),
    comment text,
    at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS ledger.deployments (
    id bigserial PRIMARY KEY,
    release_id text NOT NULL REFERENCES ledger.releases (id),
    environment text NOT NULL,
    changeset_id text NOT NULL REFERENCES ledger.changesets (id),
    target_deployment_id text,
    fingerprints jsonb NOT NULL,
    status text NOT NULL CHECK (status ~ '^[a-z_]+$'),
    actor text NOT NULL,
    at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS ledger.rollbacks (
    id bigserial PRIMARY KEY,
    deployment_id bigint NOT NULL REFERENCES ledger.deployments (id),
    proven boolean NOT NULL,
    fingerprints jsonb NOT NULL,
    reason text NOT NULL CHECK (reason <> ''),
    actor text NOT NULL,
    at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS ledger.crosswalks (
    deployment_id bigint NOT NULL REFERENCES ledger.deployments (id),
    table_name text NOT NULL,
    natural_key jsonb NOT NULL CHECK (jsonb_typeof(natural_key) = 'array'),
    target_id text NOT NULL,
    PRIMARY KEY (deployment_id, table_name, natural_key)
);

CREATE TABLE IF NOT EXISTS ledger.events (
    seq bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL,
    actor text NOT NULL CHECK (actor <> ''),
    release_id text,
    subject text,
    -- The exact text that was hashed; the jsonb copy is derived from it, so the two cannot disagree.
    payload_text text NOT NULL,
    payload jsonb GENERATED ALWAYS AS (payload_text::jsonb) STORED,
    reason text,
    dag_id text,
    run_id text,
    task_id text,
    prev_hash text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash text NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$'),
    canonical text NOT NULL,
    -- Two rows with the same predecessor would be a fork: impossible whatever the isolation level.
    CONSTRAINT events_no_fork UNIQUE (prev_hash)
);

CREATE INDEX IF NOT EXISTS events_release_idx ON ledger.events (release_id, seq);

-- The canonical form, in SQL, so an auditor can recompute every hash with psql alone:
--   SELECT seq FROM ledger.events e
--    WHERE hash <> encode(sha256(convert_to(ledger.event_canonical(e), 'UTF8')), 'hex');
CREATE OR REPLACE FUNCTION ledger.canonical_field(name text, value text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT name || ' ' || CASE WHEN value IS NULL THEN '-' ELSE octet_length(value)::text || ' ' || value END
           || E'\n'
$$;

CREATE OR REPLACE FUNCTION ledger.event_canonical(e ledger.events) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT 'gardien-ledger-event/1' || E'\n'
        || ledger.canonical_field('seq', e.seq::text)
        || ledger.canonical_field('at', to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || ledger.canonical_field('kind', e.kind)
        || ledger.canonical_field('actor', e.actor)
        || ledger.canonical_field('release_id', e.release_id)
        || ledger.canonical_field('subject', e.subject)
        || ledger.canonical_field('payload', e.payload_text)
        || ledger.canonical_field('reason', e.reason)
        || ledger.canonical_field('dag_id', e.dag_id)
        || ledger.canonical_field('run_id', e.run_id)
        || ledger.canonical_field('task_id', e.task_id)
        || ledger.canonical_field('prev_hash', e.prev_hash)
$$;

-- Every insert must extend the head: right predecessor, larger seq, honest canonical text and hash.
-- Python does the same before inserting; this keeps a writer that bypasses Gardien from forking the chain.
CREATE OR REPLACE FUNCTION ledger.events_check_append() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head_seq bigint;
    head_hash text;
BEGIN
    PERFORM pg_advisory_xact_lock(2423469849036782355);  -- ledger.store.APPEND_LOCK_KEY
    SELECT seq, hash INTO head_seq, head_hash FROM ledger.events ORDER BY seq DESC LIMIT 1;
    IF NEW.prev_hash IS DISTINCT FROM coalesce(head_hash, repeat('0', 64)) THEN
        RAISE EXCEPTION 'ledger.events: prev_hash % does not extend the head (seq %, hash %)',
            NEW.prev_hash, head_seq, head_hash USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF head_seq IS NOT NULL AND NEW.seq <= head_seq THEN
        RAISE EXCEPTION 'ledger.events: seq % is not after the head seq %', NEW.seq, head_seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.canonical IS DISTINCT FROM ledger.event_canonical(NEW) THEN
        RAISE EXCEPTION 'ledger.events: canonical text of seq % does not match its columns', NEW.seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.hash IS DISTINCT FROM encode(sha256(convert_to(NEW.canonical, 'UTF8')), 'hex') THEN
        RAISE EXCEPTION 'ledger.events: hash of seq % is not the SHA-256 of its canonical text', NEW.seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION ledger.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger.% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING HINT = 'Record a new event (e.g. a correction) instead of changing history.';
END
$$;

CREATE OR REPLACE TRIGGER events_check_append BEFORE INSERT ON ledger.events
    FOR EACH ROW EXECUTE FUNCTION ledger.events_check_append();
CREATE OR REPLACE TRIGGER events_refuse_update_delete BEFORE UPDATE OR DELETE ON ledger.events
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE OR REPLACE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON ledger.events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();

-- Statuses are derived from chained events. `releases.status`, `releases.changeset_id` and
-- `deployments.status` are mirrors kept by the trigger below, which runs as the schema's owner (SECURITY
-- DEFINER) when an event is inserted: the writer role has no UPDATE privilege at all, and any other UPDATE of
-- these tables is refused. An owner who disables the triggers can still rewrite a mirror; `gardien audit
-- verify` then names the row whose status no longer matches its events (gardien.ledger.consistency).
CREATE OR REPLACE FUNCTION ledger.apply_event_to_records() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p jsonb := NEW.payload_text::jsonb;
BEGIN
    IF NEW.kind NOT IN ('release.status_changed', 'changeset.attached', 'deployment.status_changed',
                        'rollback.recorded') THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('gardien.applying_event', NEW.seq::text, true);
    IF NEW.kind = 'release.status_changed' THEN
        UPDATE ledger.releases SET status = p ->> 'to' WHERE id = NEW.release_id;
    ELSIF NEW.kind = 'changeset.attached' THEN
        UPDATE ledger.releases SET changeset_id = NEW.subject WHERE id = NEW.release_id;
    ELSIF NEW.kind = 'deployment.status_changed' THEN
        UPDATE ledger.deployments SET status = p ->> 'to' WHERE id = (p ->> 'deployment_id')::bigint;
    ELSE
        UPDATE ledger.deployments
           SET status = CASE WHEN (p ->> 'proven')::boolean THEN 'rolled_back' ELSE 'rollback_unproven' END
         WHERE id = (p ->> 'deployment_id')::bigint;
    END IF;
    PERFORM set_config('gardien.applying_event', '', true);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION ledger.refuse_update_without_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('gardien.applying_event', true), '') = '' THEN
        RAISE EXCEPTION 'ledger.% rows change only through a chained event: UPDATE refused', TG_TABLE_NAME
            USING HINT = 'Append the event (e.g. release.status_changed); the status follows it.',
                  ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER events_apply_to_records AFTER INSERT ON ledger.events
    FOR EACH ROW EXECUTE FUNCTION ledger.apply_event_to_records();
CREATE OR REPLACE TRIGGER releases_refuse_update BEFORE UPDATE ON ledger.releases
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_update_without_event();
CREATE OR REPLACE TRIGGER deployments_refuse_update BEFORE UPDATE ON ledger.deployments
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_update_without_event();

-- Records are append-only too (statuses: see above).
CREATE OR REPLACE TRIGGER changesets_refuse_change BEFORE UPDATE OR DELETE ON ledger.changesets
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE OR REPLACE TRIGGER validation_results_refuse_change BEFORE UPDATE OR DELETE ON ledger.validation_results
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE OR REPLACE TRIGGER approvals_refuse_change BEFORE UPDATE OR DELETE ON ledger.approvals
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE OR REPLACE TRIGGER rollbacks_refuse_change BEFORE UPDATE OR DELETE ON ledger.rollbacks
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE OR REPLACE TRIGGER crosswalks_refuse_change BEFORE UPDATE OR DELETE ON ledger.crosswalks
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE OR REPLACE TRIGGER releases_refuse_delete BEFORE DELETE ON ledger.releases
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE OR REPLACE TRIGGER deployments_refuse_delete BEFORE DELETE ON ledger.deployments
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['changesets', 'releases', 'validation_results', 'approvals', 'deployments',
                             'rollbacks', 'crosswalks'] LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE TRUNCATE ON ledger.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change()', t || '_refuse_truncate', t);
    END LOOP;
END
$$;

-- The writer role: read everything, insert records and events; no UPDATE, DELETE, TRUNCATE or DDL anywhere
-- (statuses follow the events, above). The REVOKE removes the column UPDATE earlier versions granted.
GRANT USAGE ON SCHEMA ledger TO gardien_ledger_writer;
REVOKE ALL ON ALL TABLES IN SCHEMA ledger FROM gardien_ledger_writer;
REVOKE CREATE ON SCHEMA ledger FROM gardien_ledger_writer;
GRANT SELECT ON ledger.schema_versions TO gardien_ledger_writer;
GRANT SELECT, INSERT ON ledger.events, ledger.changesets, ledger.validation_results, ledger.approvals,
    ledger.rollbacks, ledger.crosswalks, ledger.releases, ledger.deployments TO gardien_ledger_writer;
GRANT USAGE ON SEQUENCE ledger.events_seq_seq, ledger.validation_results_id_seq, ledger.approvals_id_seq,
    ledger.deployments_id_seq, ledger.rollbacks_id_seq TO gardien_ledger_writer;
