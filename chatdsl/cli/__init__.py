"""cli: the chatdsl command (see the layout table in docs/development.md)."""
