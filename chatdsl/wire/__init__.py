"""wire (see the layout table in docs/development.md)."""
