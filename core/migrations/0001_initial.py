"""The base layer takes over three existing tables: a move of models between apps, not of data.

The tables keep their names (``db_table``), so only Django's state changes here: support gives
up the access log and security events, search the outbox (their migrations 0008 and 0005).
"""

import django.contrib.postgres.fields
import django.contrib.postgres.indexes
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('clinical', '0010_api_tokens_bound_to_owners'),
        # The tables as their last migrations left them (the append-only trigger included).
        ('support', '0007_backup_code_event'),
        ('search', '0004_search_record_into_access_log'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='OutboxEntry',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('label', models.CharField(help_text='Model of the record, e.g. clinical.patient.', max_length=40)),
                        ('object_id', models.BigIntegerField()),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                        ('available_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('attempts', models.PositiveIntegerField(default=0)),
                        ('last_error', models.TextField(blank=True)),
                    ],
                    options={
                        'verbose_name_plural': 'outbox entries',
                        'db_table': 'search_outboxentry',
                        'default_permissions': ('view',),
                        'indexes': [models.Index(fields=['available_at', 'id'], name='search_outbox_due_idx')],
                    },
                ),
                migrations.CreateModel(
                    name='AccessLog',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                        ('kind', models.CharField(choices=[('view', 'Viewed a record'), ('list', 'Listed records'), ('search', 'Searched'), ('export', 'Exported'), ('api_read', 'API read')], max_length=16)),
                        ('model', models.CharField(blank=True, help_text='"clinical.patient"; empty for a global search.', max_length=100)),
                        ('object_ids', django.contrib.postgres.fields.ArrayField(base_field=models.CharField(max_length=64), blank=True, default=list, size=None)),
                        ('patient_ids', django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), blank=True, default=list, size=None)),
                        ('terms', models.CharField(blank=True, max_length=200)),
                        ('source', models.CharField(blank=True, help_text='Where it happened, e.g. global search.', max_length=60)),
                        ('path', models.CharField(blank=True, max_length=500)),
                        ('method', models.CharField(blank=True, max_length=10)),
                        ('ip', models.GenericIPAddressField(blank=True, null=True)),
                        ('user_agent', models.CharField(blank=True, max_length=500)),
                        ('detail', models.CharField(blank=True, max_length=200)),
                        ('api_client', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='clinical.apiclient')),
                        ('user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'support_accesslog',
                        'ordering': ['-at', '-id'],
                        'default_permissions': ('view',),
                        'indexes': [models.Index(fields=['-at', '-id'], name='support_accesslog_at_idx'), models.Index(fields=['user', '-at'], name='support_accesslog_user_idx'), django.contrib.postgres.indexes.GinIndex(fields=['patient_ids'], name='support_accesslog_patient_idx')],
                    },
                ),
                migrations.CreateModel(
                    name='SecurityEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(choices=[('admin_probe', 'Request to /admin/'), ('permission_denied', 'Permission denied'), ('sign_in_failed', 'Sign-in failed'), ('sign_in_locked', 'Sign-in refused: locked out'), ('sign_in_unlocked', 'Sign-in unlocked by a lead'), ('api_probing', 'API: many refused or unknown requests'), ('two_factor_enabled', 'Two-factor sign-in set up'), ('two_factor_failed', 'Two-factor code refused'), ('two_factor_reset', 'Two-factor device reset'), ('two_factor_backup_used', 'Two-factor backup code used')], max_length=32)),
                        ('at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('path', models.CharField(max_length=500)),
                        ('method', models.CharField(max_length=10)),
                        ('ip', models.GenericIPAddressField(blank=True, null=True)),
                        ('user_agent', models.CharField(blank=True, max_length=500)),
                        ('detail', models.CharField(blank=True, max_length=500)),
                        ('user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'support_securityevent',
                        'ordering': ['-at', '-id'],
                        'default_permissions': ('view',),
                        'indexes': [models.Index(fields=['-at', '-id'], name='support_securityevent_at_idx')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
