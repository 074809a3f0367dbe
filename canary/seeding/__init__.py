"""Seeding: one seeder per datastore kind (``postgres``), implementing :class:`canary.seeder.Seeder`,
plus the synthesis of canary rows that blend into the real ones (``synth``)."""
