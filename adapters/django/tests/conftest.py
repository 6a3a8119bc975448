"""Configures Django for the django_ormdb tests: one app (graphapp) on an ORMDB database in a
temporary directory, its tables created once per session."""

import os
import shutil
import sys
import tempfile

import django
import pytest
from django.conf import settings

sys.path.insert(0, os.path.dirname(__file__))
_DIR = tempfile.mkdtemp(prefix="django-ormdb-tests-")

if not settings.configured:
    settings.configure(
        DATABASES={"default": {"ENGINE": "django_ormdb", "NAME": os.path.join(_DIR, "db")}},
        INSTALLED_APPS=["graphapp"],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=False,
    )
    django.setup()


@pytest.fixture(scope="session")
def schema():
    from django.apps import apps
    from django.db import connection

    with connection.schema_editor() as editor:
        for model in apps.get_app_config("graphapp").get_models():
            editor.create_model(model)
    yield
    connection.close()
    shutil.rmtree(_DIR, ignore_errors=True)
