-- Credential canaries: CloudTrail log files already ingested (per source), so a restart or a
-- second listener does not re-read a bucket directory from the start. Events are idempotent by
-- CloudTrail eventID anyway; this keeps the work bounded.

CREATE TABLE cloudtrail_files (
    source      text        NOT NULL,
    path        text        NOT NULL,
    size        bigint      NOT NULL,
    status      text        NOT NULL CHECK (status IN ('done', 'rejected')),
    records     integer     NOT NULL DEFAULT 0,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, path)
);
