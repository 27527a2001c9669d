-- A second promotion, after the first: a later edit of the same and other rows.
UPDATE location SET name = 'Location 5 (Maternity and Neonatal)' WHERE name = 'Location 5 (Maternity)';
INSERT INTO role_privilege (role, privilege) VALUES ('Triage Nurse', 'Privilege 7');
UPDATE drug SET retired = true, retire_reason = 'withdrawn from the formulary' WHERE name = 'Drug 3';
UPDATE concept_name SET name = 'Concept 11 (fr, révisé)' WHERE name = 'Concept 11 (fr)';
