"""The Django project of make.sh's `django` service: one app (this package) with a model and a few views, instrumented
with django-prometheus as its README says (middleware, database and cache wrappers, model mixin), SQLite database
and local-memory cache, /metrics at the root."""
