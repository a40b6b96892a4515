#!/bin/sh
# Backups are sorted by time with ls: their names are this script's own, without blanks.
# shellcheck disable=SC2012
# The database's backups, run by compose.yaml's `backup` service (the PostgreSQL image, so that
# pg_dump matches the server) in /backups, the project directory's backups/ on the host:
#
#   daily/    one a day at BACKUP_TIME (UTC, default 03:00), the newest BACKUP_KEEP_DAILY (7) kept
#   weekly/   Sunday's daily, the newest BACKUP_KEEP_WEEKLY (4) kept
#   release/  one before each release's migration and each restore, the newest
#             BACKUP_KEEP_RELEASE (10) kept
#   manual/   `nox -s backup`, the newest BACKUP_KEEP_MANUAL (10) kept
#
# A backup is a pg_dump custom-format file, written under a temporary name, read back whole with
# pg_restore --list, and only then renamed: every *.dump is complete. Only root reads them.
#
# Every minute it also writes /textfiles/host.prom, which nginx serves to Prometheus: the newest
# backup of each kind, the outcome of the last scheduled one, the free space of the disks that hold
# the backups and the database, and when the TLS certificate expires.
#
#   backup.sh schedule              run forever: the checks every minute, the daily backup when due
#   backup.sh now KIND [LABEL]      one backup of KIND (daily, release or manual), printed when done
#   backup.sh list                  every backup, newest first
#   backup.sh restore NAME|latest   replace the database with a backup; the replaced database is
#                                   kept, renamed (README.md, "Backups and restores")
#   backup.sh drill NAME|latest     restore into a scratch database, compare it with the live one
#                                   (rows per table, Alembic revision), and drop it
#   backup.sh heal                  let clients connect to the database again if a restore was
#                                   stopped while it swapped databases (the schedule does it)
#
# One restore or drill runs at a time (a lock on /backups/.restore.lock): the second refuses.
set -eu

BACKUPS=/backups
TEXTFILES=/textfiles
CERTIFICATE=/etc/letsencrypt/live/api/fullchain.pem
DATA=/var/lib/postgresql/data
KINDS="daily weekly release manual"
umask 077
export PGOPTIONS="${PGOPTIONS:--c client_min_messages=warning}"

log() { printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
fail() { log "error: $*" >&2; exit 1; }

keep_of() {
    case $1 in
        daily) echo "${BACKUP_KEEP_DAILY:-7}" ;;
        weekly) echo "${BACKUP_KEEP_WEEKLY:-4}" ;;
        release) echo "${BACKUP_KEEP_RELEASE:-10}" ;;
        manual) echo "${BACKUP_KEEP_MANUAL:-10}" ;;
        *) fail "unknown kind of backup: $1 (one of: $KINDS)" ;;
    esac
}

newest() { ls -1t "$BACKUPS/$1"/*.dump 2>/dev/null | head -n 1; }

# Remove all but the newest `keep` backups of a kind, and partial files a killed run left.
prune() {
    keep=$(keep_of "$1")
    ls -1t "$BACKUPS/$1"/*.dump 2>/dev/null | tail -n +"$((keep + 1))" | while read -r old; do
        rm -f -- "$old" && log "removed $old (keeping the newest $keep)"
    done
    find "$BACKUPS/$1" -name '.*.partial' -mmin +1440 -delete
}

# One backup of a kind: `now daily`, `now release before-v1.2.0`.
now() {
    kind=$1
    keep_of "$kind" >/dev/null
    label=${2:+-$(printf '%s' "$2" | tr -c 'A-Za-z0-9._-' '_')}
    mkdir -p "$BACKUPS/$kind"
    name="$PGDATABASE-$(date -u +%Y%m%dT%H%M%SZ)$label.dump"
    partial="$BACKUPS/$kind/.$name.$$.partial"
    started=$(date +%s)
    if ! pg_dump --format=custom --file="$partial" || ! pg_restore --list "$partial" >/dev/null; then
        rm -f -- "$partial"
        fail "pg_dump of $PGDATABASE failed; no $kind backup was written"
    fi
    mv -- "$partial" "$BACKUPS/$kind/$name"
    seconds=$(($(date +%s) - started))
    size=$(stat -c %s "$BACKUPS/$kind/$name")
    log "backed up $PGDATABASE in ${seconds}s ($size bytes): $kind/$name"
    echo "$seconds" > "$BACKUPS/.$kind.seconds"
    prune "$kind"
}

daily() {
    if (now daily); then  # in a subshell: a failure ends it, not the schedule
        echo 1 > "$BACKUPS/.daily.ok"
        if [ "$(date -u +%u)" = 7 ]; then  # Sunday's daily is also the week's: a second link
            mkdir -p "$BACKUPS/weekly"
            latest=$(newest daily)
            ln -f -- "$latest" "$BACKUPS/weekly/$(basename "$latest")"
            prune weekly
        fi
    else
        echo 0 > "$BACKUPS/.daily.ok"
    fi
}

list() {
    for kind in $KINDS; do
        ls -1t "$BACKUPS/$kind"/*.dump 2>/dev/null | while read -r file; do
            printf '%s\t%s\t%s\n' "$kind/$(basename "$file")" "$(stat -c %s "$file")" \
                "$(date -u -r "$file" +%Y-%m-%dT%H:%M:%SZ)"
        done
    done
}

# The backup a name means: KIND/FILE as `list` prints it, or `latest`, the newest of any kind.
resolve() {
    if [ "$1" = latest ]; then
        file=$(ls -1t "$BACKUPS"/*/*.dump 2>/dev/null | head -n 1)
        [ -n "$file" ] || fail "there are no backups yet"
    else
        case $1 in
            */*/* | *..* | /*) fail "$1 is not a backup's name: \`nox -s backup -- ENVIRONMENT --list\` lists them" ;;
        esac
        file="$BACKUPS/$1"
        [ -f "$file" ] || fail "there is no backup $1: \`nox -s backup -- ENVIRONMENT --list\` lists them"
    fi
    echo "$file"
}

# Restore a dump into a new, empty database.
restore_into() {
    psql -q -d postgres -v ON_ERROR_STOP=1 -v db="$1" <<'SQL'
SELECT format('DROP DATABASE IF EXISTS %I', :'db') \gexec
SELECT format('CREATE DATABASE %I TEMPLATE template0', :'db') \gexec
SQL
    pg_restore --no-owner --exit-on-error --dbname="$1" "$2"
}

# Rows per table and the Alembic revision of a database, one `table count` a line.
census() {
    psql -At -F ' ' -d "$1" -v ON_ERROR_STOP=1 <<'SQL'
SELECT format('SELECT %L, count(*) FROM %I.%I', schemaname || '.' || relname, schemaname, relname)
  FROM pg_stat_user_tables ORDER BY schemaname, relname \gexec
SELECT 'alembic_version', version_num FROM alembic_version;
SQL
}

# Hold the restore lock until this script exits, or refuse: one restore or drill at a time.
exclusive() {
    exec 9> "$BACKUPS/.restore.lock"
    flock -n 9 || fail "another restore or drill is running on this database; try again when it has finished"
}

# Whether the live database refuses new connections: a restore stopped while it swapped
# databases (killed, or its container restarted) leaves it so.
closed() {
    allowed=$(psql -At -d postgres -v db="$PGDATABASE" <<'SQL'
SELECT datallowconn FROM pg_database WHERE datname = :'db';
SQL
) && [ "$allowed" = f ]
}

reopen() {
    psql -q -d postgres -c "ALTER DATABASE \"$PGDATABASE\" WITH ALLOW_CONNECTIONS true"
    log "a restore was stopped while it swapped databases: $PGDATABASE, unchanged, takes" \
        "connections again; run the restore again to finish it"
}

# Reopen the database a stopped restore left closed, unless a restore is under way.
heal() {
    (flock -n 9 || exit 0; ! closed || reopen) 9> "$BACKUPS/.restore.lock"
}

restore() {
    exclusive
    ! closed || reopen
    file=$(resolve "$1")
    started=$(date +%s)
    restore_into "${PGDATABASE}_restoring" "$file"
    # To the millisecond: restores take turns (the lock), so each keeps a name of its own, which
    # PostgreSQL's 63-byte limit on names must not cut short.
    kept="$(printf %.28s "$PGDATABASE")_before_restore_$(date -u +%Y%m%dT%H%M%S%3NZ)"
    # The swap: no new connections to the live database, its sessions ended (the service's pools
    # reconnect), and both renames in one transaction.
    if ! psql -q -o /dev/null -d postgres -v ON_ERROR_STOP=1 -v db="$PGDATABASE" -v kept="$kept" <<'SQL'
SELECT set_config('restore.db', :'db', false);
SELECT format('ALTER DATABASE %I WITH ALLOW_CONNECTIONS false', :'db') \gexec
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE datname = :'db' AND pid <> pg_backend_pid();
DO $$
BEGIN
  FOR attempt IN 1..100 LOOP  -- until the ended sessions are gone: 10 s at most
    PERFORM pg_stat_clear_snapshot();  -- else the transaction sees the first answer throughout
    EXIT WHEN NOT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_setting('restore.db'));
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
BEGIN;
SELECT format('ALTER DATABASE %I RENAME TO %I', :'db', :'kept') \gexec
SELECT format('ALTER DATABASE %I RENAME TO %I', :'db' || '_restoring', :'db') \gexec
COMMIT;
SQL
    then
        psql -q -d postgres -c "ALTER DATABASE \"$PGDATABASE\" WITH ALLOW_CONNECTIONS true"
        fail "could not swap in the restored database; $PGDATABASE is unchanged"
    fi
    log "restored ${file#"$BACKUPS"/} into $PGDATABASE in $(($(date +%s) - started))s; the database" \
        "it replaced is $kept (DROP DATABASE it once it is no longer needed)"
    census "$PGDATABASE" | grep '^alembic_version' | sed 's/^/now at /'
}

drill() {
    exclusive
    file=$(resolve "$1")
    scratch="${PGDATABASE}_drill"
    started=$(date +%s)
    restore_into "$scratch" "$file"
    log "restored ${file#"$BACKUPS"/} into $scratch in $(($(date +%s) - started))s"
    census "$PGDATABASE" | sort > /tmp/live
    census "$scratch" | sort > /tmp/restored
    psql -q -d postgres -c "DROP DATABASE $scratch"
    printf '%-40s %12s %12s\n' table live restored
    join -a 1 -a 2 -e - -o 0,1.2,2.2 /tmp/live /tmp/restored | while read -r table live restored; do
        printf '%-40s %12s %12s\n' "$table" "$live" "$restored"
    done
    if cmp -s /tmp/live /tmp/restored; then
        log "drill passed: every table's rows and the Alembic revision match the live database"
    else
        log "drill: the backup differs from the live database (written since the backup?)"
    fi
}

# The metrics Prometheus reads (README.md, "Monitoring").
checks() {
    {
        echo "# HELP backup_last_success_timestamp_seconds When the newest backup of a kind was written (0: none)."
        echo "# TYPE backup_last_success_timestamp_seconds gauge"
        for kind in $KINDS; do
            latest=$(newest "$kind")
            echo "backup_last_success_timestamp_seconds{kind=\"$kind\"} $(if [ -n "$latest" ]; then stat -c %Y "$latest"; else echo 0; fi)"
        done
        echo "# HELP backup_size_bytes The size of the newest backup of a kind."
        echo "# TYPE backup_size_bytes gauge"
        for kind in $KINDS; do
            latest=$(newest "$kind")
            [ -z "$latest" ] || echo "backup_size_bytes{kind=\"$kind\"} $(stat -c %s "$latest")"
        done
        echo "# HELP backup_duration_seconds How long the last backup of a kind took."
        echo "# TYPE backup_duration_seconds gauge"
        for kind in $KINDS; do
            [ ! -f "$BACKUPS/.$kind.seconds" ] || echo "backup_duration_seconds{kind=\"$kind\"} $(cat "$BACKUPS/.$kind.seconds")"
        done
        echo "# HELP backup_last_run_success Whether the last scheduled backup succeeded."
        echo "# TYPE backup_last_run_success gauge"
        echo "backup_last_run_success $(cat "$BACKUPS/.daily.ok" 2>/dev/null || echo 1)"
        echo "# HELP host_filesystem_avail_bytes Free space, for unprivileged use, of the disk that holds a directory."
        echo "# TYPE host_filesystem_avail_bytes gauge"
        echo "# HELP host_filesystem_size_bytes Size of the disk that holds a directory."
        echo "# TYPE host_filesystem_size_bytes gauge"
        for path in "$BACKUPS" "$DATA"; do
            df -P -B1 "$path" | awk -v path="$path" 'NR == 2 {
                printf "host_filesystem_avail_bytes{path=\"%s\"} %s\n", path, $4
                printf "host_filesystem_size_bytes{path=\"%s\"} %s\n", path, $2 }'
        done
        if [ -f "$CERTIFICATE" ]; then
            expiry=$(openssl x509 -enddate -noout -in "$CERTIFICATE" | cut -d= -f2)
            echo "# HELP tls_certificate_expiry_timestamp_seconds When the certificate nginx serves expires."
            echo "# TYPE tls_certificate_expiry_timestamp_seconds gauge"
            echo "tls_certificate_expiry_timestamp_seconds{certificate=\"api\"} $(date -d "$expiry" +%s)"
        fi
        echo "# HELP host_checks_timestamp_seconds When these figures were measured."
        echo "# TYPE host_checks_timestamp_seconds gauge"
        echo "host_checks_timestamp_seconds $(date +%s)"
    } > "$TEXTFILES/.host.prom" && chmod 644 "$TEXTFILES/.host.prom" && mv "$TEXTFILES/.host.prom" "$TEXTFILES/host.prom"
}

# When the next daily backup is due: now if there is none from the last day, else at BACKUP_TIME.
due() {
    latest=$(newest daily)
    if [ -z "$latest" ] || [ $(($(date +%s) - $(stat -c %Y "$latest"))) -ge 86400 ]; then
        date +%s
        return
    fi
    at=$(date -u -d "today ${BACKUP_TIME:-03:00}" +%s) || fail "BACKUP_TIME is not HH:MM: ${BACKUP_TIME:-}"
    [ "$at" -gt "$(date +%s)" ] || at=$(date -u -d "tomorrow ${BACKUP_TIME:-03:00}" +%s)
    echo "$at"
}

schedule() {
    mkdir -p "$TEXTFILES"
    trap 'exit 0' TERM INT
    next=$(due)
    log "daily backups at ${BACKUP_TIME:-03:00} UTC; the next at $(date -u -d "@$next" +%Y-%m-%dT%H:%M:%SZ)"
    while :; do
        if [ "$(date +%s)" -ge "$next" ]; then
            daily || true
            next=$(due)
        fi
        checks || log "error: could not write $TEXTFILES/host.prom"
        heal || log "error: could not check whether $PGDATABASE takes connections"
        sleep 60 &
        wait $! || true
    done
}

case ${1:-} in
    schedule) schedule ;;
    now) shift; [ $# -ge 1 ] || fail "usage: backup.sh now daily|release|manual [LABEL]"; now "$@" ;;
    list) list ;;
    restore) [ $# -eq 2 ] || fail "usage: backup.sh restore NAME|latest"; restore "$2" ;;
    drill) [ $# -eq 2 ] || fail "usage: backup.sh drill NAME|latest"; drill "$2" ;;
    heal) heal ;;
    *) fail "usage: backup.sh schedule|now|list|restore|drill|heal" ;;
esac
