"""The store: SQLModel tables, migrations, and keyword-only query functions. Imports no other package."""
