"""The agent program's one error base: everything the agent raises on purpose derives from it.

The CLI (gateway_agent/cli.py) maps an `AgentError` to one line on stderr and a non-zero exit;
anything else is a bug and keeps its traceback. Classes that callers also catch by a standard
base (a `CompileError` is a `ValueError`) keep that base too.
"""


class AgentError(Exception):
    """A failure the agent reports to its operator in one line."""
