"""Include from the project's ROOT_URLCONF: path("", include("django_health.urls"))."""

from django.urls import path

from . import views

urlpatterns = [
    path("health/redis/", views.redis_health_check, name="redis-health"),
]
