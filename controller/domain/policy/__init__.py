"""Tenant egress policy: YAML text in, validated model, signed-bundle payload out.

The YAML is written by operators and compiled on routers into nftables JSON and dnsmasq
config, so every value is parsed into canonical form here and a bad document is rejected
with one line that names the YAML line and the path of the offending value.

Modules, in dependency order: ``fields`` (single values: networks, domains, ports, sizes),
``model`` (the pydantic Policy and its cross-checks), ``validation`` (pydantic errors to one
InvalidInput line), ``yaml_reader`` (safe YAML to plain data, with line numbers for errors)
and ``bundle`` (the protobuf PolicyBundle pushed to routers). Import from them directly.
"""
