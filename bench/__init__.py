"""dbaasctl benchmarks: storms, baselines, cache memory and idle cost (`python -m bench`, `make bench`).

See docs/benchmarks.md for what is measured and how to read the results.
"""
