"""Django gives a varchar primary key a second `varchar_pattern_ops` index for LIKE lookups.
Task ids are only ever compared whole, so that index only slows generation's inserts."""

from django.db import migrations

DROP = """
DO $$
DECLARE name text;
BEGIN
    FOR name IN
        SELECT indexname FROM pg_indexes
        WHERE tablename = 'telegram_tasks' AND indexname LIKE 'telegram_tasks_id_%_like'
    LOOP
        EXECUTE format('DROP INDEX IF EXISTS %I', name);
    END LOOP;
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [("telegram_tasks", "0004_housekeeping_schedule")]

    operations = [migrations.RunSQL(DROP, reverse_sql=migrations.RunSQL.noop)]
