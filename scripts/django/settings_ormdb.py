"""Settings for Django's own test suite (tests/runtests.py) on ORMDB: both aliases use
django_ormdb with in-memory test databases, otherwise as Django's tests/test_sqlite.py."""

DATABASES = {
    "default": {"ENGINE": "django_ormdb"},
    "other": {"ENGINE": "django_ormdb"},
}
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
