"""PostgreSQL detection: both ends of every PostgreSQL signal (the protocol constants, the record
handlers that parse what canary's objects write, the record processor) and the transports that bring a
server's log to canary (jsonlog tail, syslog, HTTP ingest)."""
