"""Threat intelligence: feed formats, the never-block guard, import and export of indicators."""
