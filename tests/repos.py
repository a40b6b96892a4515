"""Git repositories and edits the tests make of rendered projects and of the template itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

# A migration that adds a nullable column: the release before it still reads and writes the
# table (expand/contract). The release scenarios ship it as v2.
EXPAND = '''"""Add documents.summary (nullable: the release before this one keeps writing rows)."""

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"


def upgrade() -> None:
    op.add_column("documents", sa.Column("summary", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("documents", "summary")
'''


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its output."""
    result = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def commit_all(repo: Path, message: str, tag: str | None = None) -> None:
    """Commit everything in `repo`, and tag the commit."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    if tag:
        git(repo, "tag", tag)


def edit(path: Path, old: str, new: str) -> None:
    """Replace `old` (which must occur) by `new` in a file."""
    text = path.read_text()
    assert old in text, f"{path}: {old!r} not found"
    path.write_text(text.replace(old, new, 1))
