"""The package version, in a module of its own: the client and the command read it without importing
``chatdsl``'s facade (which imports them), and setup.cfg reads it without running code."""

__version__ = "0.1.0"
