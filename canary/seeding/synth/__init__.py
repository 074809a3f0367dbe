"""Synthetic customer rows that look like the rows already in a table.

:func:`profile` summarises a sample of real rows per column without keeping any real value that
identifies a person: NULL rates, length distributions, character-class shapes of strings, e-mail
local-part shapes and domain mix, phone formats, name scripts, numeric distributions and only those
categorical values that many rows share (``status``, ``country``, ``tier``). :class:`Synthesizer`
then produces rows from that profile: names, addresses and companies from Faker in the table's locale
(given, or inferred from the scripts in the data), contact points from :class:`ContactAllocator`
(pools that route back to us), timestamps from the placement the seeder chose.

Everything here is pure CPU work on plain values; the seeder runs it in a worker thread.
"""
