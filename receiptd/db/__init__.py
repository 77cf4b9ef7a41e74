"""Persistence: schema, engine set-up, migrations and the store used by the core."""
