"""Seeders: one module per datastore kind, each implementing :class:`seeders.base.Seeder`."""

from __future__ import annotations

from seeders.base import Seeder

__all__ = ["Seeder"]
