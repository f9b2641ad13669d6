"""The agent's nftables enforcement: compile desired state to one table, apply it, read its counters.

Pure, no I/O: `names` (every object name in the table), `validate` (values from policies and
IOCs), `config` (what the router adds), `expr` (JSON building blocks), `iocs` and `policy` (where
IOCs and rules go), `compile` (the full transaction), `delta` (an IOC push), `native` (the same
transaction in nft syntax, for big ones). `runner` is the only place that runs `nft`; `counters`
turns the table's counters into telemetry samples. The agent owns exactly one table,
``inet mssp``, and never touches any other.
"""

FAMILY = "inet"
TABLE = "mssp"
