from django.db import migrations

# The PHI access log is append-only in PostgreSQL itself: an UPDATE or DELETE is refused, whoever
# sends it, except a DELETE inside support_prune_access_log, the one way rows leave.
APPEND_ONLY = """
CREATE FUNCTION support_accesslog_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('ops.pruning_access_log', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'support_accesslog is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER support_accesslog_append_only BEFORE UPDATE OR DELETE ON support_accesslog
    FOR EACH ROW EXECUTE FUNCTION support_accesslog_append_only();

CREATE FUNCTION support_prune_access_log(cutoff timestamptz, batch integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    deleted integer;
BEGIN
    PERFORM set_config('ops.pruning_access_log', 'on', true);
    DELETE FROM support_accesslog
    WHERE id IN (SELECT id FROM support_accesslog WHERE at < cutoff ORDER BY at, id LIMIT batch);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    PERFORM set_config('ops.pruning_access_log', 'off', true);
    RETURN deleted;
END
$$;
"""

DROP = """
DROP FUNCTION support_prune_access_log(timestamptz, integer);
DROP TRIGGER support_accesslog_append_only ON support_accesslog;
DROP FUNCTION support_accesslog_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("support", "0005_security_event_kinds"),
    ]

    operations = [migrations.RunSQL(APPEND_ONLY, DROP)]
