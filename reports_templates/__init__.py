"""Jinja templates for leakaudit reports (shipped as package data)."""
