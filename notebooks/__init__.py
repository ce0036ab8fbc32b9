"""Not a library: this file only makes ``notebooks/conftest.py`` load as ``notebooks.conftest``.

Without it pytest imports both ``tests/conftest.py`` and ``notebooks/conftest.py`` under the module
name ``conftest``, and the one loaded last would shadow the other for the tests that do
``from conftest import ...``.
"""
