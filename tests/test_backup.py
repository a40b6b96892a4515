"""The VM's backup script on the days things go wrong: the database down during a backup, a
restore stopped half-way, two restores at once. The script runs in the database's own image,
as the `backup` compose service runs it, against a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from docker.models.containers import Container

from .conftest import Render
from .containers import Lab, base_image, lab, wait_healthy
from .matrix import full_variant

pytestmark = pytest.mark.images

DATABASE = "my_service"
ROWS = 50


@dataclass
class Host:
    """The database and the backup service's container, as compose.yaml runs them."""

    env: Lab
    postgres: Container
    backup: Container
    backups: Path

    def sh(self, script: str) -> tuple[int, str]:
        """Run a shell command in the backup service's container: (exit code, output)."""
        code, output = self.backup.exec_run(["/bin/sh", "-c", script])
        return code, bytes(output).decode(errors="replace")

    def script(self, *args: str) -> tuple[int, str]:
        return self.sh(" ".join(["/bin/sh /backup/backup.sh", *args]))

    def sql(self, statement: str, database: str = DATABASE) -> str:
        code, output = self.sh(f'psql -At -v ON_ERROR_STOP=1 -d {database} -c "{statement}"')
        assert code == 0, output
        return output.strip()

    def dumps(self) -> list[str]:
        """Every file in the directories of backups/, as `kind/name`, hidden ones too."""
        return sorted(str(p.relative_to(self.backups)) for p in self.backups.glob("*/*"))


@pytest.fixture
def host(render: Render, tmp_path: Path) -> Iterator[Host]:
    project = render(full_variant("vm"))
    image = base_image("POSTGRES_IMAGE", project)
    backups = tmp_path / "backups"
    backups.mkdir()
    with lab("slipway-backup") as env:
        postgres = env.run(
            image,
            "postgres",
            environment={
                "POSTGRES_USER": DATABASE,
                "POSTGRES_PASSWORD": "postgres",
                "POSTGRES_DB": DATABASE,
            },
            healthcheck={
                "test": ["CMD-SHELL", f"pg_isready -h 127.0.0.1 -U {DATABASE} -d {DATABASE}"],
                "interval": 1_000_000_000,
            },
        )
        backup = env.run(
            image,
            "backup",
            entrypoint=["sleep", "infinity"],
            environment={
                "PGHOST": "postgres",
                "PGUSER": DATABASE,
                "PGDATABASE": DATABASE,
                "PGPASSWORD": "postgres",
            },
            volumes={
                str(project / "deploy/vm/backup"): {"bind": "/backup", "mode": "ro"},
                str(backups): {"bind": "/backups", "mode": "rw"},
            },
        )
        wait_healthy(postgres)
        found = Host(env, postgres, backup, backups)
        found.sql(
            "CREATE TABLE documents (id int PRIMARY KEY);"
            f" INSERT INTO documents SELECT generate_series(1, {ROWS})"
        )
        yield found


def test_a_backup_while_the_database_is_down_writes_nothing(host: Host) -> None:
    code, output = host.script("now", "manual")
    assert code == 0, output
    [taken] = host.dumps()
    host.postgres.stop(timeout=10)
    code, output = host.script("now", "manual")
    assert code != 0
    assert "no manual backup was written" in output
    # Neither a truncated .dump nor the partial file it was written to.
    assert host.dumps() == [taken]


def test_a_restore_stopped_while_it_swapped_databases_is_healed(host: Host) -> None:
    code, output = host.script("now", "manual")
    assert code == 0, output
    # Where a restore stopped between closing the database and swapping it in leaves it.
    host.sql(f"ALTER DATABASE {DATABASE} WITH ALLOW_CONNECTIONS false", database="postgres")
    code, output = host.sh(f"psql -d {DATABASE} -c 'SELECT 1'")
    assert code != 0
    assert "is not currently accepting connections" in output

    # While a restore is under way, the schedule leaves the database as the restore has it.
    host.backup.exec_run(["flock", "/backups/.restore.lock", "sleep", "5"], detach=True)
    code, output = host.sh("sleep 1; /bin/sh /backup/backup.sh restore latest")
    assert code != 0
    assert "another restore or drill is running" in output
    code, output = host.script("heal")
    assert code == 0, output
    closed = f"SELECT datallowconn FROM pg_database WHERE datname = '{DATABASE}'"
    assert host.sql(closed, database="postgres") == "f"

    host.sh("flock /backups/.restore.lock true")  # until that restore is over
    code, output = host.script("heal")
    assert code == 0, output
    assert "takes connections again" in output
    assert host.sql("SELECT count(*) FROM documents") == str(ROWS)


def test_a_restore_run_again_after_it_was_stopped_restores(host: Host) -> None:
    code, output = host.script("now", "manual")
    assert code == 0, output
    host.sql("DELETE FROM documents WHERE id > 10")
    # A restore stopped during pg_restore leaves its half-restored database behind.
    host.sql(f"CREATE DATABASE {DATABASE}_restoring", database="postgres")
    host.sql("CREATE TABLE junk (id int)", database=f"{DATABASE}_restoring")
    for _ in range(2):  # and a restore run twice restores twice
        code, output = host.script("restore", "latest")
        assert code == 0, output
        assert host.sql("SELECT count(*) FROM documents") == str(ROWS)
        assert host.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'junk'") == "0"
    kept = host.sql(
        f"SELECT count(*) FROM pg_database WHERE datname LIKE '{DATABASE}_before_restore_%'",
        database="postgres",
    )
    assert kept == "2"  # each restore keeps the database it replaced
