from django.contrib import admin

from shop.models import Purchase


@admin.register(Purchase)
class PurchaseAdmin(admin.ModelAdmin):
    list_display = ("id", "customer", "action", "link", "status", "remains", "quantity")
