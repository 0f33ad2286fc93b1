"""GET /health/redis/: the Redis health contract (see README.md) for Django."""

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

import redis_health

try:  # Django >= 5.1: stay reachable when LoginRequiredMiddleware is on
    from django.contrib.auth.decorators import login_not_required
except ImportError:  # older Django has no such middleware

    def login_not_required(view):
        return view


# One client, and so one connection pool, per process: requests reuse
# connections instead of reconnecting. Creating it does not connect.
_client = redis_health.client_from_env()


@login_not_required
@never_cache
@require_GET
def redis_health_check(request):
    status, body = redis_health.collect(_client)
    return JsonResponse(body, status=status)
