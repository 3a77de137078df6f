from django.db import models


class UsageRequest(models.Model):
    """The app's own log of each usage request, written in the same transaction as the
    consume. Counters and the immutable audit trail (seed 004's UsageRecordModel and
    UsageEventModel) are quota_ext's: quota.counters and the ledger quota.usage_events."""

    tenant_id = models.CharField(max_length=128)
    metric_code = models.CharField(max_length=128)
    amount = models.BigIntegerField()
    outcome = models.CharField(max_length=32)  # pending, ok, soft_limit_exceeded, quota_exceeded
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "usage_request"
        indexes = [models.Index(fields=["tenant_id", "created_at"])]


class TrackedProduct(models.Model):
    """A product a tenant tracks. test.sh puts a table quota on it:
    quota.enforce_on_insert('tracked_product', 'tenant_id', 'tracked_products', refund_on_delete => true),
    so every inserted row consumes the tenant's tracked_products (a lifetime gauge), and
    a delete gives the unit back, whatever code path inserts or deletes."""

    tenant_id = models.CharField(max_length=128)
    sku = models.CharField(max_length=128)

    class Meta:
        db_table = "tracked_product"
        constraints = [models.UniqueConstraint(fields=["tenant_id", "sku"], name="tracked_product_tenant_sku")]
