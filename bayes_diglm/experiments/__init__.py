"""Experiment pipelines behind the CLI and the scripts in ``experiments/``: each writes ``results/<name>/``."""

from .common import markdown_table, write_results

__all__ = ["markdown_table", "write_results"]
