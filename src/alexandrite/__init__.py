"""Alexandrite order platform: shop, CRM and MES services."""

__version__ = "0.1.0"
