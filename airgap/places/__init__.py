"""Places content lives, each behind the one :class:`~airgap.places.base.Store` interface."""

from airgap.places.base import BlobBody, Store
from airgap.places.layout import LayoutStore

__all__ = ["BlobBody", "Store", "LayoutStore"]
