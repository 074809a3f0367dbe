"""canary watching itself: scheduled checks (canaries and detection intact, heartbeats, webhooks),
export-file scans, and retention of its own bookkeeping."""
