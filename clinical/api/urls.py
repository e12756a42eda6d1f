"""Routes of the JSON API, mounted at /api/v1/."""

from django.urls import path, re_path

from clinical.api import views

app_name = "api"
urlpatterns = [
    path("visits", views.create_visit, name="visits"),
    path("visits/<str:public_id>", views.visit_detail, name="visit"),
    path("visits/<str:public_id>/cancel", views.cancel_visit, name="visit-cancel"),
    re_path(
        r"^visits/(?P<public_id>[^/]+)/(?P<verb>accept|reject|connected|complete|fail)$",
        views.provider_visit_action,
        name="visit-action",
    ),
    path("providers/<str:npi>", views.provider_detail, name="provider"),
    path("providers/<str:npi>/availability", views.provider_availability, name="provider-availability"),
    re_path(r"^.*$", views.not_found),
]
