"""Deployment files and the tools that run them (not part of the installed package)."""
