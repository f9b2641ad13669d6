"""The agent's nftables enforcement: compile desired state to one table, apply it, read its counters.

`compile` is pure (state -> nft JSON document), `runner` is the only place that runs `nft`,
`counters` turns the table's counter sets into telemetry samples. The agent owns exactly one
table, ``inet mssp``, and never touches any other.
"""

FAMILY = "inet"
TABLE = "mssp"
