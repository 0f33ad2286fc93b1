"""Drop-in Django app serving GET /health/redis/ (the Redis health contract, see README.md)."""
