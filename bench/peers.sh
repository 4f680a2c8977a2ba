#!/usr/bin/env bash
# Peer brokers for bench/run.py: Debian's RabbitMQ (3.10) and ActiveMQ (5.17), each serving
# STOMP on loopback (RabbitMQ also STOMP over WebSocket: Web-STOMP), started by hand as
# background processes (no systemd or init needed).
#
#   bench/peers.sh install                  apt-get install rabbitmq-server activemq
#   bench/peers.sh start rabbitmq|activemq  configure (idempotent), start, wait for STOMP
#                                           (and, for RabbitMQ, for Web-STOMP's port)
#   bench/peers.sh stop rabbitmq|activemq   stop it (SIGTERM, then SIGKILL after a bound)
#   bench/peers.sh status                   which peers answer STOMP, and their PIDs
#
# Needs root. What it changes on the system (bench/README.md says the same):
#   RabbitMQ: writes /etc/rabbitmq/stompbench.conf and /etc/rabbitmq/stompbench_enabled_plugins
#     (rabbitmq_stomp and rabbitmq_web_stomp: ws://127.0.0.1:15674/ws);
#     runs node stompbench@localhost (data /var/lib/rabbitmq/mnesia/stompbench@localhost*,
#     log /var/log/rabbitmq/stompbench@localhost.log and stompbench-console.log); epmd on
#     127.0.0.1. The package's own config and its default node are not touched.
#   ActiveMQ: creates the instance /etc/activemq/instances-available/stompbench (main's
#     activemq.xml plus a STOMP connector; not enabled, so the init script never starts it),
#     data (KahaDB) under /var/lib/activemq/stompbench, PID file /var/run/activemq/stompbench.pid.
#
# Environment: RABBIT_PORT (61623), RABBIT_WS_PORT (15674), AMQ_PORT (61633), AMQ_STOMP_SCHEME
# (stomp; stomp+nio for ActiveMQ's NIO transport), PEERS_WAIT (120 s to wait for the STOMP port).
set -euo pipefail

RABBIT_PORT=${RABBIT_PORT:-61623}
RABBIT_WS_PORT=${RABBIT_WS_PORT:-15674}
AMQ_PORT=${AMQ_PORT:-61633}
AMQ_STOMP_SCHEME=${AMQ_STOMP_SCHEME:-stomp}
PEERS_WAIT=${PEERS_WAIT:-120}

RABBIT_NODE=stompbench@localhost
RABBIT_CONF=/etc/rabbitmq/stompbench.conf
RABBIT_PLUGINS=/etc/rabbitmq/stompbench_enabled_plugins
RABBIT_PIDFILE=/var/lib/rabbitmq/mnesia/$RABBIT_NODE.pid
RABBIT_CONSOLE_LOG=/var/log/rabbitmq/stompbench-console.log

AMQ_INSTANCE=stompbench
AMQ_CONF_DIR=/etc/activemq/instances-available/$AMQ_INSTANCE
AMQ_BASE=/var/lib/activemq/$AMQ_INSTANCE
AMQ_PIDFILE=/var/run/activemq/$AMQ_INSTANCE.pid

die() {
    echo "peers.sh: $*" >&2
    exit 1
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "run as root (it writes under /etc and starts system users' daemons)"
}

# stomp_answers PORT LOGIN PASSCODE: true when a STOMP CONNECT on 127.0.0.1:PORT gets CONNECTED.
stomp_answers() {
    python3 - "$1" "$2" "$3" <<'EOF' 2>/dev/null
import socket, sys
port, login, passcode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
    s.settimeout(3)
    s.sendall(f"CONNECT\naccept-version:1.2\nhost:/\nlogin:{login}\npasscode:{passcode}\n"
              "heart-beat:0,0\n\n\0".encode())
    data = b""
    while b"\0" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    sys.exit(0 if data.lstrip(b"\r\n").startswith(b"CONNECTED") else 1)
EOF
}

# wait_stomp NAME PORT LOGIN PASSCODE PID: wait (bounded by PEERS_WAIT) for the port to answer.
wait_stomp() {
    local name=$1 port=$2 login=$3 passcode=$4 pid=$5 waited=0
    while ! stomp_answers "$port" "$login" "$passcode"; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            die "$name exited before its STOMP port $port answered (see its log)"
        fi
        [ "$waited" -lt "$PEERS_WAIT" ] || die "$name: STOMP port $port silent after ${PEERS_WAIT}s"
        sleep 2
        waited=$((waited + 2))
    done
    echo "$name: STOMP answers on 127.0.0.1:$port (after ~${waited}s)"
}

# wait_port NAME PORT: wait (bounded by PEERS_WAIT) until 127.0.0.1:PORT accepts connections.
wait_port() {
    local name=$1 port=$2 waited=0
    while ! python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', $port), 3)" \
        2>/dev/null; do
        [ "$waited" -lt "$PEERS_WAIT" ] || die "$name: nothing on 127.0.0.1:$port after $PEERS_WAIT s"
        sleep 1
        waited=$((waited + 1))
    done
    echo "$name: listening on 127.0.0.1:$port"
}

# listener_pid PORT: the PID of the process listening on 127.0.0.1:PORT, or nothing.
listener_pid() {
    ss -Htlnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true
}

# stop_pid NAME PID PORT: SIGTERM, wait up to 60 s, then SIGKILL.
stop_pid() {
    local name=$1 pid=$2 port=$3 waited=0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 60 ]; do
        sleep 1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$name: still running after 60 s; SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "$name: stopped (pid $pid, port $port)"
}

# stop_peer NAME PIDFILE PORT: stop the process of PIDFILE, else whatever listens on PORT.
stop_peer() {
    local name=$1 pidfile=$2 port=$3 pid
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || pid=$(listener_pid "$port")
    if [ -z "$pid" ]; then
        echo "$name: not running"
    else
        stop_pid "$name" "$pid" "$port"
    fi
    rm -f "$pidfile"
}

cmd_install() {
    need_root
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian's maintainer scripts try to start the services; without an init system they
    # cannot, which is fine: `start` below runs them by hand.
    apt-get install -y -qq rabbitmq-server activemq
    echo "installed: $(dpkg-query -W -f='${Package} ${Version}  ' rabbitmq-server activemq)"
}

configure_rabbitmq() {
    cat >"$RABBIT_CONF" <<EOF
# Written by stompbroker's bench/peers.sh: node $RABBIT_NODE for benchmarks, loopback only.
listeners.tcp.1 = 127.0.0.1:5672
stomp.listeners.tcp.1 = 127.0.0.1:$RABBIT_PORT
stomp.tcp_listen_options.nodelay = true
stomp.tcp_listen_options.backlog = 4096
# Web-STOMP: STOMP over WebSocket at ws://127.0.0.1:$RABBIT_WS_PORT/ws (bench/wsbench.py).
web_stomp.tcp.ip = 127.0.0.1
web_stomp.tcp.port = $RABBIT_WS_PORT
# guest/guest may log in from loopback only (the default, made explicit).
loopback_users.guest = true
EOF
    echo "[rabbitmq_stomp,rabbitmq_web_stomp]." >"$RABBIT_PLUGINS"
    chmod 644 "$RABBIT_CONF" "$RABBIT_PLUGINS"
}

start_rabbitmq() {
    command -v rabbitmq-server >/dev/null || die "rabbitmq-server is not installed: peers.sh install"
    if stomp_answers "$RABBIT_PORT" guest guest; then
        echo "rabbitmq: already answers on 127.0.0.1:$RABBIT_PORT"
        return
    fi
    configure_rabbitmq
    ulimit -n "$(ulimit -Hn)"
    mkdir -p /var/log/rabbitmq && chown rabbitmq:rabbitmq /var/log/rabbitmq
    # su without "-" keeps these variables; the server runs as the rabbitmq user.
    (
        cd /var/lib/rabbitmq
        export RABBITMQ_NODENAME=$RABBIT_NODE RABBITMQ_CONFIG_FILE=${RABBIT_CONF%.conf}
        export RABBITMQ_ENABLED_PLUGINS_FILE=$RABBIT_PLUGINS RABBITMQ_PID_FILE=$RABBIT_PIDFILE
        export ERL_EPMD_ADDRESS=127.0.0.1
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
        setsid su rabbitmq -s /bin/sh -c "exec /usr/lib/rabbitmq/bin/rabbitmq-server" \
            >"$RABBIT_CONSOLE_LOG" 2>&1 </dev/null &
        echo $! >/tmp/.peers-rabbitmq-su.pid
    )
    wait_stomp rabbitmq "$RABBIT_PORT" guest guest "$(cat /tmp/.peers-rabbitmq-su.pid)"
    rm -f /tmp/.peers-rabbitmq-su.pid
    wait_port "rabbitmq Web-STOMP" "$RABBIT_WS_PORT"
}

stop_rabbitmq() {
    stop_peer rabbitmq "$RABBIT_PIDFILE" "$RABBIT_PORT"
    # epmd outlives the node; stop it when no Erlang node is registered any more.
    if command -v epmd >/dev/null && ! epmd -names 2>/dev/null | grep -q '^name '; then
        epmd -kill >/dev/null 2>&1 || true
    fi
}

configure_activemq() {
    local uri="$AMQ_STOMP_SCHEME://127.0.0.1:$AMQ_PORT?transport.tcpNoDelay=true"
    [ -d /etc/activemq/instances-available/main ] || die "activemq is not installed: peers.sh install"
    mkdir -p "$AMQ_CONF_DIR"
    # main's activemq.xml: KahaDB persistence, openwire on 127.0.0.1:61616; add STOMP.
    sed "s#^\( *\)<transportConnector name=\"openwire\".*#&\n\1<transportConnector name=\"stomp\" uri=\"${uri//&/\\&}\"/>#" \
        /etc/activemq/instances-available/main/activemq.xml >"$AMQ_CONF_DIR/activemq.xml"
    grep -q 'name="stomp"' "$AMQ_CONF_DIR/activemq.xml" || die "could not add the STOMP connector"
    mkdir -p "$AMQ_BASE/data" "$AMQ_BASE/tmp" /var/run/activemq
    chown activemq "$AMQ_BASE" "$AMQ_BASE/data" "$AMQ_BASE/tmp" /var/run/activemq
}

start_activemq() {
    if stomp_answers "$AMQ_PORT" admin admin; then
        echo "activemq: already answers on 127.0.0.1:$AMQ_PORT"
        return
    fi
    configure_activemq
    ulimit -n "$(ulimit -Hn)"
    # /usr/bin/activemq "start" backgrounds java as the activemq user and writes the PID file;
    # heap and options come from /usr/share/activemq/activemq-options (-Xmx512M).
    # Debian ships no SLF4J binding, so ActiveMQ logs nothing (and stdout goes to /dev/null).
    INSTANCE=$AMQ_INSTANCE ACTIVEMQ_USER=activemq ACTIVEMQ_PIDFILE=$AMQ_PIDFILE \
        ACTIVEMQ_HOME=/usr/share/activemq ACTIVEMQ_CONFIG_DIR=$AMQ_CONF_DIR \
        ACTIVEMQ_BASE=$AMQ_BASE ACTIVEMQ_DATA=$AMQ_BASE/data ACTIVEMQ_TMP=$AMQ_BASE/tmp \
        /usr/bin/activemq start xbean:activemq.xml >/dev/null
    wait_stomp activemq "$AMQ_PORT" admin admin "$(cat "$AMQ_PIDFILE" 2>/dev/null || true)"
}

stop_activemq() {
    stop_peer activemq "$AMQ_PIDFILE" "$AMQ_PORT"
}

cmd_status() {
    local name port login
    for name in rabbitmq activemq; do
        if [ "$name" = rabbitmq ]; then port=$RABBIT_PORT login=guest; else port=$AMQ_PORT login=admin; fi
        if stomp_answers "$port" "$login" "$login"; then
            echo "$name: up, STOMP on 127.0.0.1:$port (pid $(listener_pid "$port"))"
        else
            echo "$name: down (nothing answers STOMP on 127.0.0.1:$port)"
        fi
    done
}

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

main() {
    local cmd=${1:-} peer=${2:-}
    case "$cmd" in
    install) cmd_install ;;
    status) cmd_status ;;
    start | stop)
        need_root
        case "$peer" in
        rabbitmq | activemq) "${cmd}_$peer" ;;
        *) usage ;;
        esac
        ;;
    *) usage ;;
    esac
}

main "$@"
