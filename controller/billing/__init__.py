"""Billing: the plan book, charges computed from daily usage, and closing (freezing) a month."""
