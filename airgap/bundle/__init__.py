"""The offline bundle: a plain tar whose first member describes everything after it.

See docs/bundle-format.md for the format, written for people who implement or audit it.
"""

from airgap.bundle.format import BundleFile, BundleImage, BundleManifest, FORMAT_VERSION, MANIFEST_NAME
from airgap.bundle.reader import BundleReader, BundleStore
from airgap.bundle.writer import BundleWriter

__all__ = ["BundleFile", "BundleImage", "BundleManifest", "FORMAT_VERSION", "MANIFEST_NAME",
           "BundleReader", "BundleStore", "BundleWriter"]
