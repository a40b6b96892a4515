"""Alembic migrations, shipped inside the package so the image carries them."""
