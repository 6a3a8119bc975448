from django.db import models


class Event(models.Model):
    title = models.CharField(max_length=40)
    at = models.DateTimeField()
    n = models.IntegerField()

    class Meta:
        app_label = "django_fn_app"
