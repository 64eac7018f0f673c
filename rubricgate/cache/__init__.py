"""The judgment cache: one row per vote, in SQLite by default or any SQLAlchemy database."""
