from django.urls import path

from usage import views

urlpatterns = [
    path("api/quota/usage/", views.record_usage),      # POST: consume (HARD refuses, SOFT records)
    path("api/quota/check/", views.check_quota),       # POST: dry run
    path("api/quota/status/", views.quota_status),     # GET: every metric of the plan
    path("api/quota/events/", views.usage_events),     # GET: the tenant's ledger (audit trail)
    path("api/quota/requests/", views.usage_requests), # GET: the app's own request log
    path("api/products/", views.add_products),          # POST: tracked products (a table quota)
    path("api/products/<str:sku>/", views.remove_product),  # DELETE: gives the unit back
    path("health/", views.health),                     # GET: liveness, with the process ids
]
