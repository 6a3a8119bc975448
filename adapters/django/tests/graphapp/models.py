from django.db import models

from django_ormdb.graph import GraphManager


class Author(models.Model):
    name = models.CharField(max_length=50)
    born = models.DateField(null=True)
    active = models.BooleanField(default=True)
    objects = GraphManager()

    class Meta:
        app_label = "graphapp"
        ordering = ["name"]


class Profile(models.Model):
    author = models.OneToOneField(Author, models.CASCADE, related_name="profile")
    bio = models.TextField()
    objects = GraphManager()

    class Meta:
        app_label = "graphapp"


class Tag(models.Model):
    label = models.CharField(max_length=20)
    objects = GraphManager()

    class Meta:
        app_label = "graphapp"
        ordering = ["label"]


class Book(models.Model):
    author = models.ForeignKey(Author, models.CASCADE, related_name="books")
    title = models.CharField(max_length=50)
    price = models.DecimalField(max_digits=6, decimal_places=2)
    published = models.DateTimeField(null=True)
    tags = models.ManyToManyField(Tag, related_name="books")
    objects = GraphManager()

    class Meta:
        app_label = "graphapp"
        ordering = ["title"]


class Chapter(models.Model):
    book = models.ForeignKey(Book, models.CASCADE)
    number = models.IntegerField()
    objects = GraphManager()

    class Meta:
        app_label = "graphapp"
        ordering = ["number"]


class Membership(models.Model):
    """A through table with an extra column: not a join entity for the catalog."""

    tag = models.ForeignKey(Tag, models.CASCADE)
    chapter = models.ForeignKey(Chapter, models.CASCADE)
    weight = models.IntegerField(default=1)

    class Meta:
        app_label = "graphapp"


Chapter.add_to_class(
    "tags", models.ManyToManyField(Tag, through=Membership, related_name="chapters")
)
