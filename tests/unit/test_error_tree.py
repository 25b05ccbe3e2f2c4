"""One error tree: every user-facing error class lives in airgap.errors, and the names modules used to
define stay importable from there (callers and plugins written against them keep working)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import airgap
from airgap import errors


def _modules():
    for info in pkgutil.walk_packages(airgap.__path__, "airgap."):
        if info.name != "airgap.__main__":  # importing it runs the command
            yield importlib.import_module(info.name)


def test_every_airgap_error_is_defined_in_airgap_errors():
    strays = {f"{cls.__module__}.{cls.__qualname__}"
              for module in _modules()
              for _, cls in inspect.getmembers(module, inspect.isclass)
              if issubclass(cls, errors.AirgapError) and cls.__module__ != "airgap.errors"}
    assert not strays, f"define these in airgap/errors.py (and re-export if needed): {sorted(strays)}"


def test_every_error_class_is_in_the_documented_tree_with_its_family_exit_code():
    doc = errors.__doc__ or ""
    families = {errors.InputError: 2, errors.OutputError: 2, errors.BundleError: 3, errors.SignatureError: 3,
                errors.RegistryError: 4, errors.TargetError: 4, errors.BuildError: 5}
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if not issubclass(cls, errors.AirgapError) or cls is errors.AirgapError:
            continue
        assert f"── {cls.__name__} " in doc, f"{cls.__name__} is missing from the tree in airgap/errors.py's docstring"
        family = next(f for f in cls.__mro__ if f in families)
        assert cls.exit_code == families[family], cls


def test_the_old_import_paths_name_the_same_classes():
    from airgap.copy import MissingBlobs
    from airgap.outputs import OutputError
    from airgap.registry.client import Transient
    from airgap.releases import DowngradeRefused
    from airgap.sign.cosign import SignatureError
    from airgap.sign.keys import KeyError_
    from airgap.targets.plan import TagConflict

    assert (MissingBlobs, OutputError, Transient, DowngradeRefused, SignatureError, KeyError_, TagConflict) == (
        errors.MissingBlobs, errors.OutputError, errors.Transient, errors.DowngradeRefused, errors.SignatureError,
        errors.KeyFileError, errors.TagConflict)
