"""Executors run Specs: the contract (base.py) and the local executor."""
from .base import Executor, Finished, Offer
from .local import LocalExecutor

__all__ = ["Executor", "Finished", "Offer", "LocalExecutor"]
