"""The server behind `waystation serve`: its modules are imported by name (server.app, server.registry, ...)."""

__all__: list[str] = []
