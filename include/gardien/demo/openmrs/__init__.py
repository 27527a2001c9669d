"""An OpenMRS-shaped example: schema, catalog and generator for qualif and prod (``gardien demo build
--example openmrs``). The product never imports it."""
