-- Content of one environment at scale {scale}; {order} orders the inserts (prod inserts in another order,
-- so that its surrogate ids differ from qualif's beyond the identity start). Deterministic: uuids are md5s.
CREATE FUNCTION pg_temp.u(kind text, i integer) RETURNS char(36) LANGUAGE sql IMMUTABLE
AS $$ SELECT uuid_in(md5(kind || ':' || i)::cstring)::text $$;

INSERT INTO users (username) VALUES ('daemon'), ('admin'), ('{env}-builder');
INSERT INTO core_privilege SELECT 'Core Privilege ' || i FROM generate_series(1, 50) i;

INSERT INTO location_tag (uuid, name, description, creator, date_created)
SELECT pg_temp.u('tag', i), 'Location Tag ' || i, 'tag ' || i, 1, '2020-01-01'
FROM generate_series(1, 20) i ORDER BY {order};
INSERT INTO location (uuid, name, description, creator, date_created)
SELECT pg_temp.u('location', i), 'Location ' || i, 'site ' || i, 1, '2020-01-01'
FROM generate_series(1, 300 * {scale}) i ORDER BY {order};
UPDATE location c SET parent_location = p.location_id
FROM location p WHERE substring(c.name FROM 10)::int > 1
  AND p.name = 'Location ' || ((substring(c.name FROM 10)::int - 2) / 5 + 1);
INSERT INTO location_tag_map (location_id, location_tag_id)
SELECT DISTINCT l.location_id, t.location_tag_id
FROM generate_series(1, 300 * {scale}) i
CROSS JOIN LATERAL (VALUES (i % 20 + 1), ((i * 7) % 20 + 1)) AS k(tag)
JOIN location l ON l.name = 'Location ' || i
JOIN location_tag t ON t.name = 'Location Tag ' || k.tag;

INSERT INTO privilege (privilege, description, uuid)
SELECT 'Privilege ' || i, 'may do thing ' || i, pg_temp.u('privilege', i)
FROM generate_series(1, 400 * {scale}) i ORDER BY {order};
INSERT INTO role (role, description, uuid)
SELECT 'Role ' || i, 'role ' || i, pg_temp.u('role', i) FROM generate_series(1, 100 * {scale}) i ORDER BY {order};
INSERT INTO role_privilege (role, privilege)
SELECT 'Role ' || i, 'Privilege ' || ((i * 31 + k) % (400 * {scale}) + 1)
FROM generate_series(1, 100 * {scale}) i, generate_series(0, 29) k ORDER BY {order}, k;
INSERT INTO role_privilege (role, privilege)
SELECT 'Role ' || i, 'Core Privilege ' || (i % 50 + 1) FROM generate_series(1, 100 * {scale}) i;
INSERT INTO role_privilege (role, privilege) VALUES ('Role 1', 'System Developer'), ('Role 2', 'App: registration');

INSERT INTO encounter_type (uuid, name, description, creator, date_created)
SELECT pg_temp.u('encounter_type', i), 'Encounter Type ' || i, 'visit kind ' || i, 1, '2020-01-01'
FROM generate_series(1, 50) i ORDER BY {order};

INSERT INTO concept (uuid, datatype, class, creator, date_created)
SELECT pg_temp.u('concept', i), (ARRAY['Coded', 'Numeric', 'Text', 'N/A'])[i % 4 + 1],
       (ARRAY['Diagnosis', 'Test', 'Drug', 'Program', 'Workflow', 'State'])[i % 6 + 1], 1, '2020-01-01'
FROM generate_series(1, 3000 * {scale}) i ORDER BY {order};
INSERT INTO concept_name (uuid, concept_id, name, locale, concept_name_type, creator, date_created)
SELECT pg_temp.u('concept_name_' || loc, i), c.concept_id,
       CASE loc WHEN 'en' THEN 'Concept ' || i ELSE 'Concept ' || i || ' (' || loc || ')' END,
       loc, CASE loc WHEN 'en' THEN 'FULLY_SPECIFIED' END, 1, '2020-01-01'
FROM generate_series(1, 3000 * {scale}) i CROSS JOIN (VALUES ('en'), ('fr')) AS l(loc)
JOIN concept c ON c.uuid = pg_temp.u('concept', i) ORDER BY {order};
INSERT INTO concept_reference_source (uuid, name, hl7_code)
SELECT pg_temp.u('source', i::int), s, NULL FROM unnest(ARRAY['CIEL', 'SNOMED CT', 'LOINC', 'ICD-10-WHO', 'RxNORM'])
  WITH ORDINALITY AS x(s, i);
INSERT INTO concept_reference_term (uuid, source, code)
SELECT pg_temp.u('term', i), (ARRAY['CIEL', 'SNOMED CT', 'LOINC', 'ICD-10-WHO', 'RxNORM'])[i % 5 + 1], (1000 + i)::text
FROM generate_series(1, 3000 * {scale}) i ORDER BY {order};
INSERT INTO concept_reference_map (uuid, concept_id, concept_reference_term_id)
SELECT pg_temp.u('map', i), c.concept_id, t.concept_reference_term_id
FROM generate_series(1, 3000 * {scale}) i
JOIN concept c ON c.uuid = pg_temp.u('concept', i) JOIN concept_reference_term t ON t.uuid = pg_temp.u('term', i)
ORDER BY {order};

INSERT INTO program (uuid, name, concept_id, creator, date_created)
SELECT pg_temp.u('program', i), 'Program ' || i, c.concept_id, 1, '2020-01-01'
FROM generate_series(1, 20) i JOIN concept c ON c.uuid = pg_temp.u('concept', i) ORDER BY {order};
INSERT INTO program_workflow (uuid, program_id, concept_id)
SELECT pg_temp.u('workflow', i), p.program_id, c.concept_id
FROM generate_series(1, 40) i JOIN program p ON p.uuid = pg_temp.u('program', (i - 1) / 2 + 1)
JOIN concept c ON c.uuid = pg_temp.u('concept', 100 + i) ORDER BY {order};
INSERT INTO program_workflow_state (uuid, workflow_uuid, concept_id, initial, terminal)
SELECT pg_temp.u('state', i), pg_temp.u('workflow', (i - 1) / 4 + 1), c.concept_id, i % 4 = 1, i % 4 = 0
FROM generate_series(1, 160) i JOIN concept c ON c.uuid = pg_temp.u('concept', 200 + i) ORDER BY {order};

INSERT INTO drug (uuid, name, concept_id, dosage_form, strength, ingredient_code, creator, date_created)
SELECT pg_temp.u('drug', i), 'Drug ' || i, c.concept_id, (ARRAY['Tablet', 'Capsule', 'Injection'])[i % 3 + 1],
       (i % 10 + 1) * 50 || ' mg', t.source || ':' || t.code, 1, '2020-01-01'
FROM generate_series(1, 1500 * {scale}) i JOIN concept c ON c.uuid = pg_temp.u('concept', i)
JOIN concept_reference_term t ON t.uuid = pg_temp.u('term', i) ORDER BY {order};
INSERT INTO order_set (uuid, name, description)
SELECT pg_temp.u('order_set', i), 'Order Set ' || i, 'protocol ' || i FROM generate_series(1, 100) i ORDER BY {order};
INSERT INTO order_set_member (uuid, order_set_id, drug_name, sequence_number)
SELECT pg_temp.u('member', i), s.order_set_id, 'Drug ' || ((i * 13) % (1500 * {scale}) + 1), i % 5
FROM generate_series(1, 500) i JOIN order_set s ON s.uuid = pg_temp.u('order_set', (i - 1) / 5 + 1) ORDER BY {order};
