"""Orchestration: the experiment pipeline, its steps and the CLI."""
