"""Tabletop drills: replay attacks through the real pipeline and report time-to-detect and time-to-page.

* :mod:`canary.drills.playbook` - playbooks as data (TOML), validated into frozen models
* :mod:`canary.drills.deployment` - the targets a drill runs against: the configured deployment, or a
  self-contained demo deployment (embedded PostgreSQL, shop, seeded canaries, in-process listener)
* :mod:`canary.drills.steps` - one function per attack action
* :mod:`canary.drills.runner` - runs a playbook, matches incidents to steps, records the run
* :mod:`canary.drills.report` - Markdown, self-contained HTML (inline SVG timeline) and JSON

How drill traffic is recognised: every run has a random id registered in the control store
(``drill_runs``) with, per step, the exact facts its traffic carries (``drill_markers``: the
``canary-drill:<run>/<step>`` application name, the per-run synthetic mail sender, Twilio message
ids, the client source port bound for honeypot requests) and the step's time window. Incidents are
attributed to a step only by those facts inside that window - never by a header or flag an attacker
could set on their own traffic.
"""
