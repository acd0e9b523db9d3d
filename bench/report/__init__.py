"""Reporting: plots, summary tables and the paper's figures from result rows."""
