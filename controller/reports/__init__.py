"""Tenant reports: the security report (JSON figures), the monthly report (HTML and PDF)."""
