"""famefabric benchmarks: ``python -m benchmarks [--quick]`` (see BENCHMARKS.md).

Nothing here is imported by the library or by the tests. :mod:`benchmarks.driver`
is standard-library only, so the Naylence scripts (which run in the interop
virtualenv) can import it too; keep this file free of imports.
"""
