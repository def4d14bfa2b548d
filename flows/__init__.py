"""Prefect flows of the signature search."""
