"""Allows `python -m dbaasctl`."""

from dbaasctl.cli import main

raise SystemExit(main())
