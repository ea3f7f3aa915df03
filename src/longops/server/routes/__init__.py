"""One module per resource; each exposes a `routes(...)` list for the app factory."""
