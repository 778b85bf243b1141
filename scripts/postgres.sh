# Sourced by scripts/test.sh: starts a throwaway PostgreSQL cluster for the tests of PostgreSQL
# sources and stops it when the shell exits, also when tests fail. Installs Debian's server when
# missing. The cluster lives in a temporary folder, listens on a free loopback port and a unix
# socket there, runs as the `postgres` user when the tests run as root, speaks TLS with a
# certificate for `localhost` signed by an authority of its own, and asks TCP clients for a password (so that the tests
# can check that a connection string's password never shows). Exports EHDS_TEST_PG (a connection
# string with the password) and EHDS_TEST_PG_CA (the certificate, to verify the server by).

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
    install postgresql
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
pg_dir=$(mktemp -d /tmp/ehds-pg.XXXXXX)
as_owner=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$pg_dir"
    as_owner=(runuser -u postgres --)
fi
pg_password=$(openssl rand -hex 16)
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf '%s\n' "$pg_password" >"$pg_dir/password"
# A certificate authority of the tests' own, and the server's certificate for `localhost` signed by
# it (a verifying client refuses a self-signed CA certificate used as the server's own).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ehds-prep test CA" \
    -keyout "$pg_dir/ca.key" -out "$pg_dir/ca.crt" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$pg_dir/server.key" \
    -out "$pg_dir/server.csr" >/dev/null 2>&1
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$pg_dir/server.ext"
openssl x509 -req -in "$pg_dir/server.csr" -CA "$pg_dir/ca.crt" -CAkey "$pg_dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$pg_dir/server.ext" -out "$pg_dir/server.crt" >/dev/null 2>&1
chmod 600 "$pg_dir/server.key" "$pg_dir/password"
[ "$(id -u)" -ne 0 ] || chown postgres: "$pg_dir"/*
"${as_owner[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 --pwfile="$pg_dir/password" --no-sync >/dev/null
cat >>"$pg_dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$pg_dir'
ssl = on
ssl_cert_file = '$pg_dir/server.crt'
ssl_key_file = '$pg_dir/server.key'
fsync = off
max_connections = 200
CONF
stop_postgres() {
    "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" stop -m immediate >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
}
trap stop_postgres EXIT
"${as_owner[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w start >/dev/null
export EHDS_TEST_PG="host=localhost port=$pg_port user=postgres password=$pg_password dbname=postgres"
export EHDS_TEST_PG_CA="$pg_dir/ca.crt"
