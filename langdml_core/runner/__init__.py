"""The runner: sweep files, Ray Tune, the search, MLflow tracking, reports, plots and the ``langdml`` command.

It imports the library (``langdml_core`` outside this package); the library never imports it
(tests/test_import_graph.py checks both).
"""
