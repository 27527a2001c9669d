-- Pending configuration changes in qualif (the first promotion).
INSERT INTO privilege (privilege, description, uuid) VALUES
  ('Manage Queues', 'may manage patient queues', 'a0000000-0000-4000-8000-000000000001');
INSERT INTO role (role, description, uuid) VALUES ('Triage Nurse', 'triage', 'a0000000-0000-4000-8000-000000000002');
INSERT INTO role_privilege (role, privilege) VALUES
  ('Triage Nurse', 'Manage Queues'),        -- managed, new in this release
  ('Triage Nurse', 'Core Privilege 3'),     -- an unmanaged table of the target
  ('Triage Nurse', 'App: triage'),          -- the pattern
  ('Triage Nurse', 'Provider');             -- only the allow-list: validation names it
UPDATE location SET name = 'Location 5 (Maternity)', description = 'maternity ward' WHERE name = 'Location 5';
INSERT INTO location (uuid, name, description, parent_location, creator, date_created)
SELECT 'a0000000-0000-4000-8000-000000000003', 'Location Triage', 'triage desk', location_id, 3, now()
FROM location WHERE name = 'Location 2';
INSERT INTO location_tag_map (location_id, location_tag_id)
SELECT l.location_id, t.location_tag_id FROM location l, location_tag t
WHERE l.name = 'Location Triage' AND t.name IN ('Location Tag 1', 'Location Tag 4');
UPDATE encounter_type SET retired = true, retire_reason = 'merged into Encounter Type 1' WHERE name = 'Encounter Type 7';
INSERT INTO concept (uuid, datatype, class, creator, date_created)
VALUES ('a0000000-0000-4000-8000-000000000004', 'N/A', 'Drug', 3, now());
INSERT INTO concept_name (uuid, concept_id, name, locale, concept_name_type, creator, date_created)
SELECT 'a0000000-0000-4000-8000-00000000000' || x.n, concept_id, x.name, x.loc, x.t, 3, now()
FROM concept, (VALUES ('5', 'Artemether', 'en', 'FULLY_SPECIFIED'), ('6', 'Arteméther', 'fr', NULL)) AS x(n, name, loc, t)
WHERE uuid = 'a0000000-0000-4000-8000-000000000004';
INSERT INTO concept_reference_term (uuid, source, code) VALUES ('a0000000-0000-4000-8000-000000000007', 'CIEL', '71184');
INSERT INTO drug (uuid, name, concept_id, dosage_form, strength, ingredient_code, creator, date_created)
SELECT 'a0000000-0000-4000-8000-000000000008', 'Artemether 20 mg', concept_id, 'Tablet', '20 mg', 'CIEL:71184', 3, now()
FROM concept WHERE uuid = 'a0000000-0000-4000-8000-000000000004';
UPDATE drug SET strength = '1 g' WHERE name = 'Drug 12';
UPDATE concept_name SET name = 'Concept 10 (fr, révisé)' WHERE name = 'Concept 10 (fr)';
INSERT INTO program (uuid, name, concept_id, creator, date_created)
SELECT 'a0000000-0000-4000-8000-000000000009', 'Malaria Program', concept_id, 3, now() FROM concept
WHERE uuid = 'a0000000-0000-4000-8000-000000000004';
INSERT INTO program_workflow (uuid, program_id, concept_id)
SELECT 'a0000000-0000-4000-8000-000000000010', program_id, concept_id FROM program WHERE name = 'Malaria Program';
INSERT INTO program_workflow_state (uuid, workflow_uuid, concept_id, initial, terminal)
SELECT 'a0000000-0000-4000-8000-00000000001' || n, 'a0000000-0000-4000-8000-000000000010', concept_id, n = 1, n = 3
FROM concept, generate_series(1, 3) n WHERE uuid = 'a0000000-0000-4000-8000-000000000004';
INSERT INTO order_set_member (uuid, order_set_id, drug_name, sequence_number)
SELECT 'a0000000-0000-4000-8000-000000000020', order_set_id, 'Artemether 20 mg', 9 FROM order_set WHERE name = 'Order Set 1';
DELETE FROM order_set_member WHERE sequence_number = 2 AND order_set_id = (SELECT order_set_id FROM order_set WHERE name = 'Order Set 2');
