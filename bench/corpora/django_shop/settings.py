import os

BASE_DIR = os.environ.get("CORPUS_DJANGO_DIR", ".")
SECRET_KEY = "corpus-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "django_shop.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["django_prometheus", "django.contrib.contenttypes", "django_shop"]
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
DATABASES = {
    "default": {
        "ENGINE": "django_prometheus.db.backends.sqlite3",
        "NAME": os.path.join(BASE_DIR, "shop.sqlite3"),
    }
}
CACHES = {
    "default": {
        "BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache",
        "LOCATION": "corpus",
    }
}
PROMETHEUS_EXPORT_MIGRATIONS = True
LOGGING = {"version": 1, "disable_existing_loggers": False}
