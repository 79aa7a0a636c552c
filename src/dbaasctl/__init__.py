"""dbaasctl: a Kubernetes operator that provisions databases through DBA-owned stored procedures."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dbaasctl")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
