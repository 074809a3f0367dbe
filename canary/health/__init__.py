"""canary watching itself: scheduled checks (canaries and detection intact, heartbeats, webhooks),
export-file scans, retention of its own bookkeeping, and the coverage report (every exfiltration path
per datastore, covered / partly / not covered and why: coverage_report.py)."""
