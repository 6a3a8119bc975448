from django.db import models

from django_ormdb.graph import GraphManager


class Author(models.Model):
    name = models.CharField(max_length=50)
    born = models.DateField(null=True)
    objects = GraphManager()

    class Meta:
        app_label = "django_bench_app"


class Tag(models.Model):
    label = models.CharField(max_length=20)
    objects = GraphManager()

    class Meta:
        app_label = "django_bench_app"


class Book(models.Model):
    author = models.ForeignKey(Author, models.CASCADE, related_name="books")
    title = models.CharField(max_length=80)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    tags = models.ManyToManyField(Tag, related_name="books")
    objects = GraphManager()

    class Meta:
        app_label = "django_bench_app"


class Chapter(models.Model):
    book = models.ForeignKey(Book, models.CASCADE, related_name="chapters")
    number = models.IntegerField()
    words = models.IntegerField()
    objects = GraphManager()

    class Meta:
        app_label = "django_bench_app"
