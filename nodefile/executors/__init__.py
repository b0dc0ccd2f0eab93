"""Executors run Specs: submit, wait for any to finish, cancel."""
from .local import LocalExecutor, Finished

__all__ = ["LocalExecutor", "Finished"]
