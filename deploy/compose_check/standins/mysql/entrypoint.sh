#!/bin/sh
# What the official mysql image's entry point does, as far as docker-compose.yml relies on it:
# on an empty data volume, create the system tables, set the root password (MYSQL_ROOT_PASSWORD,
# or none with MYSQL_ALLOW_EMPTY_PASSWORD), run /docker-entrypoint-initdb.d/*.sql and *.sh with
# networking off (so a TCP health check passes only once that is done), then start the server.
set -eu

datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock

if [ "${1#-}" != "$1" ]; then
    set -- mariadbd "$@"
fi

sql_string() {  # a value as a single-quoted SQL string literal
    printf "'%s'" "$(printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/''/g")"
}

if [ "$1" = mariadbd ] && [ ! -d "$datadir/mysql" ]; then
    if [ -z "${MYSQL_ROOT_PASSWORD:-}" ] && [ -z "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" ]; then
        echo "error: set MYSQL_ROOT_PASSWORD or MYSQL_ALLOW_EMPTY_PASSWORD" >&2
        exit 1
    fi
    echo "standin-mysql: initialising $datadir"
    mariadb-install-db --datadir="$datadir" --skip-test-db \
        --auth-root-authentication-method=normal --skip-name-resolve >/dev/null
    mariadbd --skip-networking --socket="$socket" &
    pid=$!
    for _ in $(seq 60); do
        mariadb-admin --socket="$socket" -uroot ping >/dev/null 2>&1 && break
        sleep 1
    done
    password=$(sql_string "${MYSQL_ROOT_PASSWORD:-}")
    # No anonymous accounts: they would shadow 'user'@'%' for connections from localhost.
    mariadb --socket="$socket" -uroot <<SQL
DELETE FROM mysql.global_priv WHERE User = '';
ALTER USER 'root'@'localhost' IDENTIFIED BY $password;
CREATE USER 'root'@'%' IDENTIFIED BY $password;
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sql) echo "standin-mysql: running $script"
                   MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-}" mariadb --socket="$socket" -uroot < "$script" ;;
            *.sh) echo "standin-mysql: running $script"; . "$script" ;;
            *) ;;
        esac
    done
    MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-}" mariadb-admin --socket="$socket" -uroot shutdown
    wait "$pid"
    echo "standin-mysql: initialised"
fi

exec "$@"
