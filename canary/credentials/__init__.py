"""Credential canaries: derived values (AWS keys, tokens, DSNs, roles) and the sources that notice
their use (HTTP and PostgreSQL honeypots, CloudTrail)."""
