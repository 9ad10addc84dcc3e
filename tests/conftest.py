"""Collects the test_*.hy files beside the Python tests."""
import sys

import hy  # noqa: F401  (imports .hy modules)
import pytest


class HyTestModule(pytest.Module):
    """A test module written in Hy. pytest's assertion rewriting parses modules as Python,
    so it is left out while a .hy module is imported; Hy's `assert` still reports failures."""

    def _getobj(self):
        hooks = [h for h in sys.meta_path if type(h).__name__ == "AssertionRewritingHook"]
        for hook in hooks:
            sys.meta_path.remove(hook)
        try:
            return super()._getobj()
        finally:
            sys.meta_path[:0] = hooks


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".hy" and file_path.name.startswith("test_"):
        return HyTestModule.from_parent(parent, path=file_path)
    return None
