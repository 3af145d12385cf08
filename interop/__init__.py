"""The strongSwan 6 interop lab: network namespaces, charon daemons and captures.

See ``interop/README.md`` and :mod:`interop.lab`.
"""
