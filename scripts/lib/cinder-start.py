#!/usr/bin/python3
"""Starts a Cinder service (Debian's Cinder 21.3.1, Zed) with one fix, for scripts/openstack.sh.

    cinder-start.py api|scheduler|volume [--config-file FILE ...]

With notifications on, oslo.messaging 14.0.3 hands Cinder request contexts rebuilt from dicts
that carry `read_deleted: None`, and Cinder's setter refuses None (`ValueError: read_deleted
can only be one of 'no', 'yes' or 'only', not None`): every volume create fails. Here None
means the default, "no". Everything else is Cinder's own `cinder-<service>` entry point.
"""
import importlib
import sys

if len(sys.argv) < 2 or sys.argv[1] not in ("api", "scheduler", "volume"):
    sys.exit(__doc__)
service = sys.argv.pop(1)
sys.argv[0] = f"cinder-{service}"
# The service module first: it monkey-patches eventlet before anything else is imported.
module = importlib.import_module(f"cinder.cmd.{service}")

from cinder import context  # noqa: E402

_prop = context.RequestContext.read_deleted


def _set_read_deleted(self, value):
    _prop.fset(self, "no" if value is None else value)


context.RequestContext.read_deleted = property(_prop.fget, _set_read_deleted, _prop.fdel)
sys.exit(module.main())
