-- Every change to which values are canaries (a canary registered or retired, its values added, removed or
-- re-indexed by a key rotation) notifies channel canary_values when it commits, whoever wrote it (seed,
-- trickle, retire, rotate-key): what keeps those values in memory (the gateway check,
-- canary/credentials/gateway.py) reloads them at once instead of at its next refresh_interval, so a canary
-- token used in the first seconds after seeding is not missed. Statement triggers: one notification per
-- statement, and PostgreSQL folds identical notifications of one transaction into one.
-- Owned by canary/store/registry.py (VALUES_CHANNEL).

CREATE FUNCTION canary_values_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('canary_values', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER canary_values_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON canary_values
    FOR EACH STATEMENT EXECUTE FUNCTION canary_values_changed();
CREATE TRIGGER retired_values_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON retired_values
    FOR EACH STATEMENT EXECUTE FUNCTION canary_values_changed();
CREATE TRIGGER canaries_status_changed AFTER UPDATE OF status OR DELETE ON canaries
    FOR EACH STATEMENT EXECUTE FUNCTION canary_values_changed();
