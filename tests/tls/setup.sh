#!/usr/bin/env bash
# Gives the local RabbitMQ a TLS listener for the broker_security end-to-end tests.
#
# 1. Generates, with openssl, into $MAILROOM_TLS_DIR (default /var/tmp/mailroom-tls — /var/tmp
#    survives reboots, so a broker that boots with the snippet below always finds its files):
#      ca.pem / ca-key.pem                 the test CA
#      server.pem / server-key.pem         the broker's certificate, for localhost and 127.0.0.1
#      client.pem / client-key.pem         a client certificate signed by the test CA
#      wrong-ca.pem / wrong-ca-key.pem     an unrelated CA (what a misconfigured client trusts)
#      wrong-client.pem / wrong-client-key.pem  a client certificate signed by the unrelated CA
#    Files are only regenerated when one is missing or the server certificate expires within a
#    day, so repeated runs change nothing.
# 2. Writes /etc/rabbitmq/conf.d/90-mailroom-tls.conf enabling `listeners.ssl` on
#    127.0.0.1:${MAILROOM_TLS_PORT:-5671} with those files (peer verification on, client
#    certificate optional, so both one-way TLS and mutual TLS can be tested).
# 3. Restarts the broker only if the snippet or the certificates changed (or the listener is not
#    up), then waits until the broker and its management API answer again. Durable vhosts, users
#    and queues survive the restart; open connections do not, which is why this runs once, before
#    the tests (.ci/run calls it).
#
# These are throw-away test certificates: the keys are readable by the broker's user and by the
# tests, and nothing here is meant for production (see docs/OPERATIONS.md, "Security").
set -euo pipefail

DIR=${MAILROOM_TLS_DIR:-/var/tmp/mailroom-tls}
PORT=${MAILROOM_TLS_PORT:-5671}
CONF_DIR=${RABBITMQ_CONF_D:-/etc/rabbitmq/conf.d}
SNIPPET="$CONF_DIR/90-mailroom-tls.conf"
DAYS=3650

log() { printf '[tls-setup] %s\n' "$*"; }

wait_until() { # wait_until SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq "$limit"); do
    if "$@" >/dev/null 2>&1; then log "$what is up"; return 0; fi
    sleep 1
  done
  log "$what did not come up within ${limit}s"; return 1
}

# --- 1. certificates -------------------------------------------------------------------------

FILES=(ca.pem ca-key.pem server.pem server-key.pem client.pem client-key.pem
       wrong-ca.pem wrong-ca-key.pem wrong-client.pem wrong-client-key.pem)

need_certs() {
  local f
  for f in "${FILES[@]}"; do [[ -s "$DIR/$f" ]] || return 0; done
  # Regenerate a day before expiry rather than let the tests fail on an expired chain.
  ! openssl x509 -checkend 86400 -noout -in "$DIR/server.pem" >/dev/null 2>&1
}

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

new_ca() { # new_ca NAME CN
  new_key "$DIR/$1-key.pem"
  openssl req -x509 -new -key "$DIR/$1-key.pem" -sha256 -days "$DAYS" -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$DIR/$1.pem"
}

new_leaf() { # new_leaf NAME CA CN EXTENSIONS
  local name=$1 ca=$2 cn=$3 ext=$4
  new_key "$DIR/$name-key.pem"
  openssl req -new -key "$DIR/$name-key.pem" -subj "/CN=$cn" -out "$DIR/$name.csr"
  printf '%s\n' "$ext" >"$DIR/$name.ext"
  openssl x509 -req -in "$DIR/$name.csr" -CA "$DIR/$ca.pem" -CAkey "$DIR/$ca-key.pem" \
    -CAcreateserial -sha256 -days "$DAYS" -extfile "$DIR/$name.ext" -out "$DIR/$name.pem" 2>/dev/null
  rm -f "$DIR/$name.csr" "$DIR/$name.ext"
}

certs_changed=false
if need_certs; then
  log "generating test certificates in $DIR"
  mkdir -p "$DIR"
  # Regenerating one file means regenerating the chain, so start from nothing.
  rm -f "$DIR"/*.pem "$DIR"/*.srl
  new_ca ca "Mailroom test CA"
  new_ca wrong-ca "Mailroom unrelated CA"
  leaf_common="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
authorityKeyIdentifier=keyid"
  new_leaf server ca localhost "$leaf_common
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
  new_leaf client ca mailroom-test-client "$leaf_common
extendedKeyUsage=clientAuth"
  new_leaf wrong-client wrong-ca mailroom-test-client "$leaf_common
extendedKeyUsage=clientAuth"
  certs_changed=true
fi
# The broker runs as its own user and must read its key; the directory holds test keys only.
chmod 755 "$DIR"
chmod 644 "$DIR"/*.pem
openssl verify -CAfile "$DIR/ca.pem" "$DIR/server.pem" "$DIR/client.pem" >/dev/null

# --- 2. broker configuration -----------------------------------------------------------------

desired=$(cat <<EOF
# Written by tests/tls/setup.sh (Mailroom): a TLS listener with throw-away test certificates.
listeners.ssl.local = 127.0.0.1:$PORT
ssl_options.cacertfile = $DIR/ca.pem
ssl_options.certfile = $DIR/server.pem
ssl_options.keyfile = $DIR/server-key.pem
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
EOF
)
snippet_changed=false
if [[ ! -f "$SNIPPET" ]] || [[ "$(cat "$SNIPPET")" != "$desired" ]]; then
  if ! { mkdir -p "$CONF_DIR" && [[ -w "$CONF_DIR" ]]; } 2>/dev/null; then
    log "cannot write $CONF_DIR (the broker's configuration): run this script as root"
    exit 1
  fi
  log "writing $SNIPPET"
  mkdir -p "$CONF_DIR"
  printf '%s\n' "$desired" >"$SNIPPET"
  chmod 644 "$SNIPPET"
  snippet_changed=true
fi

# --- 3. restart only when needed -------------------------------------------------------------

listener_up() { rabbitmq-diagnostics -q listeners 2>/dev/null | grep -q "port: $PORT.*amqp/ssl"; }

if ! rabbitmqctl -q status >/dev/null 2>&1; then
  # Not running: it reads the snippet when it starts (.ci/run starts it).
  log "RabbitMQ is not running; starting it"
  rabbitmq-server -detached
elif $snippet_changed || $certs_changed || ! listener_up; then
  log "restarting RabbitMQ to load the TLS listener"
  rabbitmqctl -q stop
  rabbitmq-server -detached
else
  log "TLS listener already up on 127.0.0.1:$PORT; nothing to do"
  exit 0
fi
wait_until 120 "RabbitMQ" rabbitmqctl -q await_startup
if [[ -f /etc/rabbitmq/enabled_plugins ]] && grep -q rabbitmq_management /etc/rabbitmq/enabled_plugins; then
  wait_until 120 "RabbitMQ management API" curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview
fi
if ! listener_up; then
  log "the TLS listener on 127.0.0.1:$PORT did not come up; see /var/log/rabbitmq/ for the reason"
  exit 1
fi
log "TLS listener up on 127.0.0.1:$PORT (CA: $DIR/ca.pem)"
