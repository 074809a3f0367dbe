"""Contact canaries: mail and phone numbers that route back to canary (SMTP, inbound-mail and SMS /
voice webhooks), with the parsing, verdicts and evidence they share."""
