-- coverage (issue 7): where pgaudit object audit was configured (its later absence is tampering),
-- and what the export scanner has already scanned (one alert per file version).

CREATE TABLE coverage_audit (
    datastore     text PRIMARY KEY,
    role          text        NOT NULL,
    tables        text[]      NOT NULL,
    configured_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scanned_files (
    location   text        NOT NULL,            -- dir:/path/file or s3:<bucket config>/<key>
    version    text        NOT NULL,            -- size:mtime_ns (files) or ETag (objects)
    matches    integer     NOT NULL DEFAULT 0,
    bytes      bigint      NOT NULL DEFAULT 0,
    scanned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (location, version)
);
