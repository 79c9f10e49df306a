"""Every strategy with an account gets one subscription to it, with no setting of its own:
it keeps trading exactly as before (fans_out stays False: the engine runs its alerts
directly on that account with the strategy's settings)."""

from django.db import migrations


def forwards(apps, schema_editor):
    Strategy = apps.get_model("strategies", "Strategy")
    Subscription = apps.get_model("strategies", "Subscription")
    for strategy in Strategy.objects.filter(account__isnull=False).only("id", "account_id"):
        Subscription.objects.get_or_create(strategy_id=strategy.pk, account_id=strategy.account_id)


class Migration(migrations.Migration):
    dependencies = [("strategies", "0004_subscriptions")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
