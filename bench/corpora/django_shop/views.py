import json

from django.core.cache import cache
from django.db import connection
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .models import Order


@csrf_exempt
def orders(request):
    """GET lists the orders (cached for a few seconds), POST adds one."""
    if request.method == "POST":
        body = json.loads(request.body or b"{}")
        order = Order.objects.create(item=body.get("item", "apple"), quantity=int(body.get("quantity", 1)))
        cache.delete("orders")
        return JsonResponse({"id": order.id}, status=201)
    listed = cache.get("orders")
    if listed is None:
        listed = list(Order.objects.values("id", "item", "quantity"))
        cache.set("orders", listed, 5)
    return JsonResponse({"orders": listed})


@csrf_exempt
def order(request, order_id):
    """GET one order (404 if there is none), DELETE removes it."""
    try:
        found = Order.objects.get(id=order_id)
    except Order.DoesNotExist:
        raise Http404("no such order") from None
    if request.method == "DELETE":
        found.delete()
        return JsonResponse({}, status=204)
    if request.method == "PUT":
        found.quantity += 1
        found.save()
    return JsonResponse({"id": found.id, "item": found.item, "quantity": found.quantity})


def report(request):
    """A view with a bug: it reads a table that no migration made, so it always fails with a server error."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT SUM(total) FROM shop_report")
        return JsonResponse({"total": cursor.fetchone()[0]})
