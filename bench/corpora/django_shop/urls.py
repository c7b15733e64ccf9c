from django.urls import include, path

from . import views

urlpatterns = [
    path("orders/", views.orders, name="orders"),
    path("orders/<int:order_id>/", views.order, name="order"),
    path("report/", views.report, name="report"),
    path("", include("django_prometheus.urls")),
]
