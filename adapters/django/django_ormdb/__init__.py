"""Django database backend for ORMDB: ``ENGINE: "django_ormdb"``.

Django imports ``<ENGINE>.base.DatabaseWrapper``; ``django_ormdb.graph`` holds the
``.graph()`` queryset method (native graph fetch).
"""

__version__ = "0.1.0"
