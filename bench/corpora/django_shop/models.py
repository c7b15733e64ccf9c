from django.db import models
from django_prometheus.models import ExportModelOperationsMixin


class Order(ExportModelOperationsMixin("order"), models.Model):
    item = models.CharField(max_length=40)
    quantity = models.IntegerField(default=1)
