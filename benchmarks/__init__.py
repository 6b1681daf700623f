"""One benchmark module per family: ``python -m benchmarks.<family> [--quick] [--check]``.

The shared harness (fresh processes, fresh inputs, targets, JSON, table) is ``_common``.
"""
