"""Extra CLI commands, each a module exposing register(app)."""
