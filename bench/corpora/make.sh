#!/usr/bin/env bash
# Re-make the search development corpus: real services from Debian packages (a user's own services from PyPI
# packages, in virtualenvs under the temporary directory), started on 127.0.0.1 on free ports
# with a little traffic, scraped by a real Prometheus, and the Prometheus metadata API saved per service as
# bench/corpora/<service>.json ({"status": "success", "data": [...]}, the shape of /api/v1/targets/metadata), with
# its series as bench/corpora/<service>.series.json.gz (/api/v1/series: the labels and their values).
#
# Usage: bash bench/corpora/make.sh [service ...]     (default: every service below; needs root for apt-get)
#
# Everything runs in a temporary directory and is stopped at the end; the packages' own system services are kept
# from starting (policy-rc.d), so nothing is left running. PostgreSQL, nginx, etcd and HAProxy (and their
# exporters) are NOT used on purpose: they are reserved for an independent check of search quality.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

SERVICES=(mysqld rabbitmq bind pdns_recursor dnsdist apache squid varnish process postfix caddy bird trafficserver libvirt
  frr dovecot kresd smokeping rspamd tor pdns_auth prosody registry rclone containerd dockerd nebula
  snmp)
PACKAGES=(
  prometheus curl dnsutils amqp-tools
  mariadb-server prometheus-mysqld-exporter
  rabbitmq-server
  bind9 prometheus-bind-exporter
  pdns-recursor
  dnsdist
  apache2 prometheus-apache-exporter
  squid prometheus-squid-exporter
  varnish prometheus-varnish-exporter
  prometheus-process-exporter
  postfix prometheus-postfix-exporter
  caddy
  bird2 prometheus-bird-exporter
  trafficserver prometheus-trafficserver-exporter
  prometheus-libvirt-exporter
  frr prometheus-frr-exporter
  dovecot-core dovecot-imapd dovecot-lmtpd
  knot-resolver knot-resolver-module-http
  prometheus-smokeping-prober
  rspamd
  tor
  pdns-server pdns-backend-bind
  prosody
  docker-registry
  rclone
  containerd
  docker.io
  nebula
  snmpd snmp prometheus-snmp-exporter
)
# A user's own services, from PyPI packages (pip) in throw-away virtualenvs under the work directory (python_venv).
SERVICES+=(celery django)
PACKAGES+=(python3-venv redis-server)
# Servers from PyPI packages too (python_venv): Dask's distributed and the Synapse Matrix homeserver.
SERVICES+=(dask synapse)
# A user's own services from npm packages (npm_app: an app directory here with its package-lock.json), on Node.js.
SERVICES+=(express)
SERVICES+=(n8n)
PACKAGES+=(nodejs)
# The machine itself as collectd sees it (Debian's collectd-core; its write_prometheus plugin needs libmicrohttpd12).
SERVICES+=(collectd)
PACKAGES+=(collectd-core libmicrohttpd12)
# JupyterHub from PyPI (python_venv) with its proxy, configurable-http-proxy, from npm (npm_app jupyterhub_proxy).
SERVICES+=(jupyterhub)
# The RQ job queue from PyPI (python_venv) with two workers, Redis from Debian, and rq-exporter from PyPI.
SERVICES+=(rq)
# ISC Kea's DHCPv4 server and control agent (Debian), exported by kea-exporter from PyPI (python_venv); perfdhcp
# (kea-admin) is the DHCP client.
SERVICES+=(kea)
PACKAGES+=(kea-dhcp4-server kea-ctrl-agent kea-admin)
# The PM2 process manager from npm (npm_app pm2_app) with small apps and pm2-metrics.
SERVICES+=(pm2)
# Hardware monitoring: Debian's prometheus-ipmi-exporter (it runs FreeIPMI's tools) reading a BMC that OpenIPMI's
# LAN simulator (ipmi_sim) plays on 127.0.0.1, its sensor records compiled with OpenIPMI's sdrcomp.
SERVICES+=(ipmi)
PACKAGES+=(openipmi freeipmi-tools prometheus-ipmi-exporter)
# A one-node Pacemaker cluster on Corosync (Debian's pacemaker, corosync), read by Debian's
# prometheus-hacluster-exporter.
SERVICES+=(hacluster)
PACKAGES+=(corosync pacemaker prometheus-hacluster-exporter)
# Flower, Celery's monitoring web application from PyPI (python_venv), watching two workers of celery_app.py on a
# Redis of their own (Debian's redis-server).
SERVICES+=(flower)
# Network UPS Tools (Debian's nut-server, nut-client): upsd with UPSes played by its dummy-ups driver, watched by
# Eneru from PyPI (python_venv), a NUT monitor with a Prometheus endpoint of its own, in dry-run mode.
SERVICES+=(nut)
PACKAGES+=(nut-server nut-client)
# Two qBittorrents (Debian's qbittorrent-nox) sharing torrents on 127.0.0.1, read by an exporter from PyPI (python_venv).
SERVICES+=(qbittorrent)
PACKAGES+=(qbittorrent-nox)
# A user's own FastAPI service (fastapi_shop.py here) instrumented with prometheus-fastapi-instrumentator, on
# uvicorn, from PyPI (python_venv).
SERVICES+=(fastapi)
# A one-node Ceph cluster (Debian's ceph 16: a monitor, a manager with its prometheus module, one OSD on a file).
SERVICES+=(ceph)
PACKAGES+=(ceph-mon ceph-mgr ceph-osd ceph-mgr-modules-core ceph-common)
# A user's own Fastify service from npm (npm_app fastify_app) with fastify-metrics.
SERVICES+=(fastify)
# A one-node Ray cluster from PyPI (python_venv, ray[default]) with its metrics export port, a driver of ray_app.py.
SERVICES+=(ray)
# A user's own BullMQ service from npm (npm_app bullmq_app) on a Redis of its own (Debian's redis-server): BullMQ's
# Prometheus export with prom-client's default metrics, and its OpenTelemetry metrics on OpenTelemetry's exporter.
SERVICES+=(bullmq)
# A user's own Moleculer microservices from npm (npm_app moleculer_app), two nodes on a Redis transporter (Debian's
# redis-server), with Moleculer's own Prometheus metrics reporter.
SERVICES+=(moleculer)
# A user's own GraphQL API on GraphQL Yoga from npm (npm_app graphql_app) with GraphQL Yoga's Prometheus plugin.
SERVICES+=(graphql)
# jupyter_server from PyPI (python_venv), the single-user Jupyter server on its own, with ipykernel and terminals.
SERVICES+=(jupyter_server)
# RPKI to routers: Debian's stayrtr, an RPKI-to-Router (RTR) server fed a JSON file of validated ROA payloads, with
# rtrmon (same package) comparing its RTR feed with another JSON file; rtrdump (same package) is the router.
SERVICES+=(stayrtr)
PACKAGES+=(stayrtr)
# A media relay for VoIP calls: Debian's rtpengine-daemon (userspace only, no kernel module) with its own
# Prometheus endpoint on its HTTP listener; rtpengine_calls.py here plays the SIP proxy (NG protocol) and the phones.
SERVICES+=(rtpengine)
PACKAGES+=(rtpengine-daemon)
# A user's own gRPC services in Python (grpc_app.py here) from PyPI (python_venv): grpcio with py-grpc-prometheus.
SERVICES+=(grpc)
# Prefect's server from PyPI (python_venv) on SQLite with its API metrics, process workers, and a user's own process
# running flows against it (prefect_app.py here) with Prefect's client metrics.
SERVICES+=(prefect)
# An SSH honeypot: Debian's sshesame with its metrics address, visited by OpenSSH's client.
SERVICES+=(sshesame)
PACKAGES+=(sshesame openssh-client)
# Seldon's MLServer from PyPI (python_venv) serving a user's own two models (mlserver_app/ here) over REST and gRPC.
SERVICES+=(mlserver)
# Seconds Prometheus scrapes (every 5 seconds; reading all of /proc can take seconds) before the metadata is read; traffic runs again in between.
SCRAPE_SECONDS=${SCRAPE_SECONDS:-20}

log() { echo "corpora: $*" >&2; }

# --- packages -----------------------------------------------------------------------------------------------------

install_packages() {
  local missing=() package
  for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  [ "${#missing[@]}" -eq 0 ] && return
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  echo "postfix postfix/mailname string corpus.localdomain" | debconf-set-selections
  local policy=/usr/sbin/policy-rc.d added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    added_policy=1
  fi
  local status=0 try
  for try in 1 2 3 4 5 6 7 8 9 10; do
    status=0
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
    [ "$status" -eq 0 ] && break
    log "apt-get failed (dpkg lock held by someone else?), retrying in 30 s"
    sleep 30
  done
  [ -n "$added_policy" ] && rm -f "$policy"
  return "$status"
}

# --- processes ----------------------------------------------------------------------------------------------------

WORK=""
PIDS=()
STOPS=() # commands for daemons that leave their session (postfix's master), run before the sessions are ended
declare -A TARGET PARAMS METRICS_PATH INSTANCE
# Metric names (a regular expression) left out of a service's snapshot: metrics of reserved software that a service
# vendors (dockerd's swarm embeds etcd's raft log and shows its etcd_* metrics).
declare -A LEAVE_OUT=([dockerd]='etcd_.*')

# Start a command in its own session (so stop_all can end it and its children), output to WORK/logs/<name>.log.
spawn() {
  local name=$1
  shift
  setsid "$@" >>"$WORK/logs/$name.log" 2>&1 </dev/null &
  PIDS+=($!)
}

stop_all() {
  local pid stop
  for stop in "${STOPS[@]}"; do $stop >/dev/null 2>&1 || true; done
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=""
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.2
  done
  for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  [ -n "$WORK" ] && [ -z "${KEEP_WORK:-}" ] && rm -rf "$WORK"
  return 0
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait until a command succeeds (a port answers, a socket exists), at most $1 seconds.
wait_for() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out waiting for: $*"
      return 1
    fi
    sleep 0.3
  done
}

http_ok() { curl -fsS -o /dev/null --max-time 10 "$1"; }

# Register what Prometheus scrapes for a service; the instance label is fixed so that re-made snapshots diff cleanly.
scrape() {
  local service=$1 target=$2 instance=$3 path=${4:-/metrics} params=${5:-}
  TARGET[$service]=$target
  INSTANCE[$service]=$instance
  METRICS_PATH[$service]=$path
  PARAMS[$service]=$params
}

# Once the exporter on 127.0.0.1:$2 answers ${5:-/metrics} (within ${4:-30} s), register it as service $1's, instance $3.
scrape_exporter() {
  local service=$1 port=$2 instance=$3 seconds=${4:-30} path=${5:-/metrics}
  wait_for "$seconds" http_ok "http://127.0.0.1:$port$path" || return 1
  scrape "$service" "127.0.0.1:$port" "$instance" "$path"
}

# --- services: each starts the real server (and its exporter) and sends it a little traffic ------------------------

start_mysqld() {
  local dir=$WORK/mysqld port exporter
  port=$(free_port)
  exporter=$(free_port)
  mkdir -p "$dir/data" && chown -R mysql:mysql "$dir"
  mariadb-install-db --user=mysql --datadir="$dir/data" --auth-root-authentication-method=socket >/dev/null || return 1
  spawn mysqld mariadbd --no-defaults --user=mysql --datadir="$dir/data" --socket="$dir/mysqld.sock" \
    --pid-file="$dir/mysqld.pid" --port="$port" --bind-address=127.0.0.1 --performance-schema=ON \
    --userstat=ON --log-bin="$dir/data/binlog"
  wait_for 60 mariadb --socket="$dir/mysqld.sock" -e "SELECT 1" || return 1
  mariadb --socket="$dir/mysqld.sock" >/dev/null <<'SQL' || return 1
CREATE USER 'exporter'@'localhost' IDENTIFIED BY 'exporter' WITH MAX_USER_CONNECTIONS 3;
GRANT PROCESS, REPLICATION CLIENT, SELECT, SLAVE MONITOR ON *.* TO 'exporter'@'localhost';
CREATE DATABASE shop;
CREATE TABLE shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(40), qty INT, KEY (item)) ENGINE=InnoDB;
INSERT INTO shop.orders (item, qty) VALUES ('apple', 1), ('pear', 2), ('plum', 3);
INSERT INTO shop.orders (item, qty) SELECT item, qty + 1 FROM shop.orders;
UPDATE shop.orders SET qty = qty + 1 WHERE item = 'apple';
SELECT COUNT(*) FROM shop.orders WHERE qty > 1;
DELETE FROM shop.orders WHERE item = 'plum';
SQL
  printf '[client]\nuser=exporter\npassword=exporter\nsocket=%s\n' "$dir/mysqld.sock" >"$dir/exporter.cnf"
  spawn mysqld-exporter prometheus-mysqld-exporter --config.my-cnf="$dir/exporter.cnf" \
    --web.listen-address="127.0.0.1:$exporter" \
    --collect.global_status --collect.global_variables --collect.info_schema.innodb_metrics \
    --collect.info_schema.processlist --collect.info_schema.tables --collect.info_schema.tablestats \
    --collect.info_schema.schemastats --collect.info_schema.userstats --collect.info_schema.clientstats \
    --collect.info_schema.innodb_tablespaces --collect.info_schema.innodb_cmp --collect.info_schema.innodb_cmpmem \
    --collect.info_schema.query_response_time --collect.engine_innodb_status --collect.binlog_size \
    --collect.auto_increment.columns --collect.perf_schema.tableiowaits --collect.perf_schema.indexiowaits \
    --collect.perf_schema.tablelocks --collect.perf_schema.eventsstatements \
    --collect.perf_schema.eventsstatementssum --collect.perf_schema.eventswaits \
    --collect.perf_schema.file_events --collect.perf_schema.file_instances --collect.perf_schema.memory_events \
    --collect.slave_status --collect.mysql.user
  scrape_exporter mysqld "$exporter" mysqld:9104
}

traffic_mysqld() {
  # A statement still running while Prometheus scrapes, so that the processlist metrics exist.
  spawn mysqld-client mariadb --socket="$WORK/mysqld/mysqld.sock" -e "SELECT SLEEP($SCRAPE_SECONDS)"
  mariadb --socket="$WORK/mysqld/mysqld.sock" -e \
    "SELECT * FROM shop.orders WHERE item = 'pear'; INSERT INTO shop.orders (item, qty) VALUES ('fig', 9);
     SELECT SLEEP(0.2); SELECT nosuchcolumn FROM shop.orders;" >/dev/null 2>&1 || true
}

start_rabbitmq() {
  local dir=$WORK/rabbitmq epmd amqp dist metrics
  epmd=$(free_port)
  amqp=$(free_port)
  dist=$(free_port)
  metrics=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$amqp
prometheus.tcp.port = $metrics
prometheus.tcp.ip = 127.0.0.1
loopback_users = none
EOF
  echo "[rabbitmq_prometheus]." >"$dir/enabled_plugins"
  spawn epmd epmd -port "$epmd" -address 127.0.0.1
  spawn rabbitmq env ERL_EPMD_PORT="$epmd" HOME="$dir" RABBITMQ_NODENAME=corpus@localhost \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_DIST_PORT="$dist" RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/rabbit.pid" RABBITMQ_PLUGINS_EXPAND_DIR="$dir/plugins-expand" \
    /usr/lib/rabbitmq/bin/rabbitmq-server
  wait_for 120 http_ok "http://127.0.0.1:$metrics/metrics" || return 1
  RABBITMQ_URL="amqp://guest:guest@127.0.0.1:$amqp"
  amqp-declare-queue --url="$RABBITMQ_URL" -q orders -d >/dev/null
  traffic_rabbitmq
  scrape rabbitmq "127.0.0.1:$metrics" rabbitmq:15692
}

traffic_rabbitmq() {
  local i
  for i in 1 2 3 4 5; do amqp-publish --url="$RABBITMQ_URL" -r orders -b "order $i"; done
  amqp-get --url="$RABBITMQ_URL" -q orders >/dev/null || true
  timeout 2 amqp-consume --url="$RABBITMQ_URL" -q orders -c 2 cat >/dev/null || true
}

# The zone corpus.test that the authoritative servers (BIND, PowerDNS) serve.
corpus_zone() {
  cat <<'EOF'
$TTL 300
@    IN SOA ns.corpus.test. admin.corpus.test. 1 3600 600 86400 300
@    IN NS  ns.corpus.test.
ns   IN A   127.0.0.1
www  IN A   127.0.0.2
mail IN A   127.0.0.3
@    IN MX  10 mail.corpus.test.
EOF
}

start_bind() {
  local dir=$WORK/bind stats exporter
  BIND_PORT=$(free_port)
  stats=$(free_port)
  exporter=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/named.conf" <<EOF
options {
  directory "$dir";
  pid-file "$dir/named.pid";
  listen-on port $BIND_PORT { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
  allow-query { 127.0.0.1; };
};
statistics-channels { inet 127.0.0.1 port $stats allow { 127.0.0.1; }; };
controls { };
zone "corpus.test" { type primary; file "$dir/corpus.test.zone"; };
EOF
  corpus_zone >"$dir/corpus.test.zone"
  spawn bind named -g -c "$dir/named.conf"
  wait_for 30 dig +short +time=1 +tries=1 -p "$BIND_PORT" @127.0.0.1 ns.corpus.test || return 1
  traffic_bind
  spawn bind-exporter prometheus-bind-exporter --bind.stats-url="http://127.0.0.1:$stats/" \
    --web.listen-address="127.0.0.1:$exporter" --bind.stats-groups=server,view,tasks
  scrape_exporter bind "$exporter" bind:9119
}

# A few answered, unanswered and refused queries against a DNS server on 127.0.0.1.
dns_queries() {
  local port=$1 name
  for name in www.corpus.test mail.corpus.test nosuch.corpus.test corpus.test example.org; do
    dig +time=1 +tries=1 -p "$port" @127.0.0.1 "$name" A >/dev/null || true
  done
  dig +time=1 +tries=1 -p "$port" @127.0.0.1 corpus.test MX >/dev/null || true
  dig +tcp +time=1 +tries=1 -p "$port" @127.0.0.1 www.corpus.test AAAA >/dev/null || true
}

traffic_bind() { dns_queries "$BIND_PORT"; }

start_pdns_recursor() {
  local dir=$WORK/pdns-recursor web
  PDNS_PORT=$(free_port)
  web=$(free_port)
  mkdir -p "$dir"
  : >"$dir/recursor.conf"
  spawn pdns-recursor pdns_recursor --config-dir="$dir" --socket-dir="$dir" --daemon=no --write-pid=no \
    --local-address=127.0.0.1 --local-port="$PDNS_PORT" --forward-zones="corpus.test=127.0.0.1:$BIND_PORT" \
    --webserver=yes --webserver-address=127.0.0.1 --webserver-port="$web" --webserver-allow-from=127.0.0.1 \
    --api-key=corpus --setuid=root --setgid=root
  wait_for 30 http_ok "http://127.0.0.1:$web/metrics" || return 1
  traffic_pdns_recursor
  scrape pdns_recursor "127.0.0.1:$web" pdns_recursor:8082
}

traffic_pdns_recursor() { dns_queries "$PDNS_PORT"; }

start_dnsdist() {
  local dir=$WORK/dnsdist web
  DNSDIST_PORT=$(free_port)
  web=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/dnsdist.conf" <<EOF
setLocal("127.0.0.1:$DNSDIST_PORT")
newServer({address="127.0.0.1:$BIND_PORT", name="bind"})
newServer({address="127.0.0.1:$PDNS_PORT", name="recursor"})
setServerPolicy(leastOutstanding)
pc = newPacketCache(1000)
getPool(""):setCache(pc)
webserver("127.0.0.1:$web")
setWebserverConfig({password="corpus", apiKey="corpus", acl="127.0.0.0/8", statsRequireAuthentication=false})
addAction(QNameRule("blocked.corpus.test"), RCodeAction(DNSRCode.REFUSED))
EOF
  spawn dnsdist dnsdist --supervised --disable-syslog -C "$dir/dnsdist.conf"
  wait_for 30 http_ok "http://127.0.0.1:$web/metrics" || return 1
  traffic_dnsdist
  scrape dnsdist "127.0.0.1:$web" dnsdist:8083
}

traffic_dnsdist() {
  dns_queries "$DNSDIST_PORT"
  dns_queries "$DNSDIST_PORT"
  dig +time=1 +tries=1 -p "$DNSDIST_PORT" @127.0.0.1 blocked.corpus.test >/dev/null || true
}

start_apache() {
  local dir=$WORK/apache exporter module
  APACHE_PORT=$(free_port)
  exporter=$(free_port)
  mkdir -p "$dir/www" "$dir/logs"
  echo "hello from the corpus" >"$dir/www/index.html"
  {
    for module in mpm_event authz_core authz_host status dir mime; do
      echo "LoadModule ${module}_module /usr/lib/apache2/modules/mod_${module}.so"
    done
    cat <<EOF
ServerRoot "$dir"
ServerName localhost
Listen 127.0.0.1:$APACHE_PORT
PidFile "$dir/apache2.pid"
User www-data
Group www-data
ErrorLog "$dir/logs/error.log"
LogFormat "%h %l %u %t \"%r\" %>s %b" common
CustomLog "$dir/logs/access.log" common
DocumentRoot "$dir/www"
DirectoryIndex index.html
TypesConfig /etc/mime.types
ExtendedStatus On
<Directory "$dir/www">
  Require all granted
</Directory>
<Location "/server-status">
  SetHandler server-status
  Require ip 127.0.0.1
</Location>
EOF
  } >"$dir/apache2.conf"
  chmod -R a+rX "$dir"
  spawn apache apache2 -f "$dir/apache2.conf" -DFOREGROUND
  wait_for 30 http_ok "http://127.0.0.1:$APACHE_PORT/" || return 1
  traffic_apache
  spawn apache-exporter prometheus-apache-exporter --telemetry.address="127.0.0.1:$exporter" \
    --scrape_uri="http://127.0.0.1:$APACHE_PORT/server-status?auto"
  scrape_exporter apache "$exporter" apache:9117
}

traffic_apache() {
  local i
  for i in 1 2 3 4 5; do curl -s -o /dev/null "http://127.0.0.1:$APACHE_PORT/" || true; done
  curl -s -o /dev/null "http://127.0.0.1:$APACHE_PORT/missing" || true
}

start_squid() {
  local dir=$WORK/squid exporter
  SQUID_PORT=$(free_port)
  exporter=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/squid.conf" <<EOF
http_port 127.0.0.1:$SQUID_PORT
pid_filename $dir/squid.pid
access_log stdio:$dir/access.log
cache_log $dir/cache.log
cache_store_log none
coredump_dir $dir
cache_mem 16 MB
acl localnet src 127.0.0.0/8
http_access allow manager localnet
http_access allow localnet
http_access deny all
refresh_pattern . 1 100% 60
EOF
  chown -R proxy:proxy "$dir"
  spawn squid squid -N -f "$dir/squid.conf"
  wait_for 30 curl -fsS -o /dev/null "http://127.0.0.1:$SQUID_PORT/squid-internal-mgr/info" || return 1
  traffic_squid
  spawn squid-exporter prometheus-squid-exporter -squid-hostname 127.0.0.1 -squid-port "$SQUID_PORT" \
    -listen "127.0.0.1:$exporter" -extractservicetimes
  scrape_exporter squid "$exporter" squid:9301
}

traffic_squid() {
  local i
  for i in 1 2 3; do curl -s -o /dev/null -x "127.0.0.1:$SQUID_PORT" "http://127.0.0.1:$APACHE_PORT/" || true; done
  curl -s -o /dev/null -x "127.0.0.1:$SQUID_PORT" "http://127.0.0.1:$APACHE_PORT/missing" || true
  curl -s -o /dev/null -x "127.0.0.1:$SQUID_PORT" "http://127.0.0.1:1/unreachable" || true
}

start_varnish() {
  local dir=$WORK/varnish exporter
  VARNISH_PORT=$(free_port)
  exporter=$(free_port)
  mkdir -p "$dir"
  spawn varnish varnishd -F -a "127.0.0.1:$VARNISH_PORT" -b "127.0.0.1:$APACHE_PORT" -n "$dir/instance" \
    -s malloc,32m -T none
  wait_for 60 http_ok "http://127.0.0.1:$VARNISH_PORT/" || return 1
  traffic_varnish
  spawn varnish-exporter prometheus-varnish-exporter -n "$dir/instance" -web.listen-address "127.0.0.1:$exporter"
  scrape_exporter varnish "$exporter" varnish:9131
}

traffic_varnish() {
  local i
  for i in 1 2 3 4; do curl -s -o /dev/null "http://127.0.0.1:$VARNISH_PORT/" || true; done
  curl -s -o /dev/null "http://127.0.0.1:$VARNISH_PORT/missing" || true
  curl -s -o /dev/null -X PURGE "http://127.0.0.1:$VARNISH_PORT/" || true
}

start_process() {
  local dir=$WORK/process exporter
  exporter=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/process.yml" <<'EOF'
process_names:
  - name: "{{.Comm}}"
    cmdline:
      - '.+'
EOF
  spawn process-exporter prometheus-process-exporter -config.path "$dir/process.yml" -threads=true \
    -web.listen-address "127.0.0.1:$exporter"
  scrape_exporter process "$exporter" process:9256 60
}

start_postfix() {
  local dir=$WORK/postfix exporter
  POSTFIX_PORT=$(free_port)
  exporter=$(free_port)
  mkdir -p "$dir/etc" "$dir/spool" "$dir/data"
  cp /etc/postfix/master.cf "$dir/etc/master.cf"
  sed -i "s/^smtp      inet/$POSTFIX_PORT      inet/" "$dir/etc/master.cf"
  cat >"$dir/etc/main.cf" <<EOF
compatibility_level = 3.6
myhostname = corpus.localdomain
mydestination = corpus.localdomain, localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
queue_directory = $dir/spool
data_directory = $dir/data
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
alias_maps =
local_recipient_maps =
default_transport = error:no outbound mail from the corpus
relay_transport = error:no outbound mail from the corpus
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
EOF
  chown postfix "$dir/data"
  touch "$dir/maillog"
  postfix -c "$dir/etc" check || return 1
  postfix -c "$dir/etc" start >/dev/null || return 1
  STOPS+=("postfix -c $dir/etc stop")
  wait_for 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$POSTFIX_PORT" || return 1
  spawn postfix-exporter prometheus-postfix-exporter --web.listen-address="127.0.0.1:$exporter" \
    --postfix.showq_path="$dir/spool/public/showq" --postfix.logfile_path="$dir/maillog"
  wait_for 30 http_ok "http://127.0.0.1:$exporter/metrics" || return 1
  traffic_postfix
  scrape postfix "127.0.0.1:$exporter" postfix:9154
}

traffic_postfix() {
  python3 - "$POSTFIX_PORT" <<'EOF' || true
import smtplib, socket, sys

port = int(sys.argv[1])
for sender, recipient in [("ops@corpus.localdomain", "root@localhost"), ("a@b.example", "someone@elsewhere.example"),
                          ("ops@corpus.localdomain", "nobody@corpus.localdomain")]:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
            smtp.sendmail(sender, [recipient], f"Subject: corpus\n\nhello {recipient}\n")
    except smtplib.SMTPException:
        pass
with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
    smtp.docmd("NOSUCHCOMMAND")
socket.create_connection(("127.0.0.1", port), timeout=5).close()  # a lost connection
EOF
}

start_caddy() {
  local dir=$WORK/caddy admin
  CADDY_PORT=$(free_port)
  admin=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/Caddyfile" <<EOF
{
  admin 127.0.0.1:$admin
  servers {
    metrics
  }
  auto_https off
  storage file_system $dir/storage
}
http://127.0.0.1:$CADDY_PORT {
  respond /missing "not here" 404
  respond "hello from the corpus"
}
EOF
  spawn caddy env XDG_DATA_HOME="$dir" XDG_CONFIG_HOME="$dir" caddy run --adapter caddyfile --config "$dir/Caddyfile"
  wait_for 30 http_ok "http://127.0.0.1:$CADDY_PORT/" || return 1
  traffic_caddy
  scrape caddy "127.0.0.1:$admin" caddy:2019
}

traffic_caddy() {
  local i
  for i in 1 2 3 4; do curl -s -o /dev/null "http://127.0.0.1:$CADDY_PORT/" || true; done
  curl -s -o /dev/null "http://127.0.0.1:$CADDY_PORT/missing" || true
  curl -s -o /dev/null -X POST -d 'x=1' "http://127.0.0.1:$CADDY_PORT/" || true
}

start_bird() {
  local dir=$WORK/bird exporter
  exporter=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/bird.conf" <<'EOF'
router id 192.0.2.1;
protocol device { }
protocol static static_v4 {
  ipv4;
  route 198.51.100.0/24 blackhole;
  route 203.0.113.0/24 unreachable;
}
protocol static static_v6 {
  ipv6;
  route 2001:db8::/48 blackhole;
}
protocol bgp peer_down {
  local 127.0.0.1 as 64512;
  neighbor 127.0.0.2 as 64513;
  ipv4 { import all; export none; };
}
EOF
  spawn bird bird -f -c "$dir/bird.conf" -s "$dir/bird.ctl"
  wait_for 30 test -S "$dir/bird.ctl" || return 1
  spawn bird-exporter prometheus-bird-exporter -bird.v2 -bird.socket "$dir/bird.ctl" -format.new \
    -web.listen-address "127.0.0.1:$exporter"
  scrape_exporter bird "$exporter" bird:9324
}

start_trafficserver() {
  local dir=$WORK/trafficserver exporter
  TRAFFICSERVER_PORT=$(free_port)
  exporter=$(free_port)
  mkdir -p "$dir/cache" "$dir/run" "$dir/log"
  cp -r /etc/trafficserver "$dir/etc"
  # A runroot moves configuration, cache, logs and the runtime directory into the work directory.
  cat >"$dir/runroot.yaml" <<EOF
prefix: /usr
exec_prefix: /usr
bindir: /usr/bin
sbindir: /usr/sbin
sysconfdir: $dir/etc
datadir: $dir/cache
includedir: /usr/include
libdir: /usr/lib/trafficserver
libexecdir: /usr/lib/trafficserver/modules
localstatedir: $dir
runtimedir: $dir/run
logdir: $dir/log
cachedir: $dir/cache
EOF
  sed -i -e "s/^CONFIG proxy.config.http.server_ports STRING .*/CONFIG proxy.config.http.server_ports STRING $TRAFFICSERVER_PORT/" \
    -e "s/^CONFIG proxy.config.admin.user_id STRING .*/CONFIG proxy.config.admin.user_id STRING #-1/" "$dir/etc/records.config"
  # No crash-log helper: it writes a report under /var/log/trafficserver when the server is stopped.
  echo "CONFIG proxy.config.crash_log_helper STRING /bin/true" >>"$dir/etc/records.config"
  echo "stats_over_http.so" >"$dir/etc/plugin.config"
  echo "map / http://127.0.0.1:$APACHE_PORT/" >"$dir/etc/remap.config"
  echo "$dir/cache 64M" >"$dir/etc/storage.config"
  spawn trafficserver traffic_server --run-root="$dir/runroot.yaml"
  wait_for 60 http_ok "http://127.0.0.1:$TRAFFICSERVER_PORT/_stats" || return 1
  traffic_trafficserver
  spawn trafficserver-exporter prometheus-trafficserver-exporter --no-procstats --addr 127.0.0.1 \
    --port "$exporter" --endpoint "http://127.0.0.1:$TRAFFICSERVER_PORT/_stats"
  scrape_exporter trafficserver "$exporter" trafficserver:9122
}

traffic_trafficserver() {
  local i
  for i in 1 2 3 4; do curl -s -o /dev/null "http://127.0.0.1:$TRAFFICSERVER_PORT/" || true; done
  curl -s -o /dev/null "http://127.0.0.1:$TRAFFICSERVER_PORT/missing" || true
  curl -s -o /dev/null -H "Host:" "http://127.0.0.1:$TRAFFICSERVER_PORT/" || true
}

# FRR in a network namespace of its own (unshare --net: only a loopback, so zebra touches no real routing table):
# zebra, staticd, ospfd (area 0 on the loopback) and bfdd; a bgpd with an established eBGP session to a second bgpd
# and a neighbour that never answers (with a BFD session that never comes up). Addresses are 10.255.0.x on the
# namespace's loopback. The exporter runs outside and reads the daemons' vty sockets (and vtysh for BFD).
start_frr() {
  local dir=$WORK/frr exporter daemon
  exporter=$(free_port)
  mkdir -p "$dir/peer"
  cat >"$dir/zebra.conf" <<'EOF'
hostname corpus
interface lo
EOF
  cat >"$dir/staticd.conf" <<'EOF'
ip route 198.51.100.0/24 blackhole
EOF
  cat >"$dir/ospfd.conf" <<'EOF'
interface lo
 ip ospf area 0.0.0.0
router ospf
 ospf router-id 192.0.2.1
EOF
  cat >"$dir/bfdd.conf" <<'EOF'
bfd
 peer 10.255.0.3 local-address 10.255.0.1
EOF
  cat >"$dir/bgpd.conf" <<'EOF'
router bgp 64512
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 neighbor 10.255.0.2 remote-as 64513
 neighbor 10.255.0.2 update-source 10.255.0.1
 neighbor 10.255.0.2 disable-connected-check
 neighbor 10.255.0.2 description {"desc":"lab transit","type":"transit"}
 neighbor 10.255.0.3 remote-as 64514
 neighbor 10.255.0.3 update-source 10.255.0.1
 neighbor 10.255.0.3 description {"desc":"gone customer","type":"customer"}
 neighbor 10.255.0.3 bfd
 address-family ipv4 unicast
  network 198.51.100.0/24
  redistribute connected
 exit-address-family
EOF
  cat >"$dir/peer/bgpd.conf" <<'EOF'
router bgp 64513
 bgp router-id 192.0.2.2
 no bgp ebgp-requires-policy
 neighbor 10.255.0.1 remote-as 64512
 neighbor 10.255.0.1 update-source 10.255.0.2
 neighbor 10.255.0.1 disable-connected-check
 address-family ipv4 unicast
  network 203.0.113.0/24
  network 203.0.113.128/25
 exit-address-family
EOF
  {
    echo "ip link set lo up && ip address add 10.255.0.1/32 dev lo && ip address add 10.255.0.2/32 dev lo"
    echo "/usr/lib/frr/zebra -f $dir/zebra.conf -i $dir/zebra.pid -z $dir/zserv.api --vty_socket $dir -P 0 &"
    echo "for _ in \$(seq 50); do [ -S $dir/zserv.api ] && break; sleep 0.2; done"
    for daemon in staticd ospfd bfdd; do
      echo "/usr/lib/frr/$daemon -f $dir/$daemon.conf -i $dir/$daemon.pid -z $dir/zserv.api --vty_socket $dir -P 0 &"
    done
    echo "/usr/lib/frr/bgpd -f $dir/bgpd.conf -i $dir/bgpd.pid -z $dir/zserv.api --vty_socket $dir -P 0 -l 10.255.0.1 &"
    echo "/usr/lib/frr/bgpd -f $dir/peer/bgpd.conf -i $dir/peer/bgpd.pid -Z --vty_socket $dir/peer -P 0 -l 10.255.0.2 &"
    echo "wait"
  } >"$dir/run.sh"
  chown -R frr:frr "$dir"
  spawn frr unshare --net bash "$dir/run.sh"
  wait_for 30 test -S "$dir/bgpd.vty" -a -S "$dir/ospfd.vty" -a -S "$dir/bfdd.vty" || return 1
  # Wait for the session to the second bgpd to come up, so its prefixes are counted.
  wait_for 60 bash -c "vtysh --vty_socket $dir -c 'show bgp neighbor 10.255.0.2 json' |
    grep -q '\"bgpState\":\"Established\"'" ||
    log "frr: the BGP session to the second bgpd did not come up"
  spawn frr-exporter prometheus-frr-exporter --frr.socket.dir-path="$dir" --frr.vtysh.options="--vty_socket=$dir" \
    --collector.bgp.peer-types --collector.bgp.peer-descriptions --web.listen-address="127.0.0.1:$exporter"
  scrape_exporter frr "$exporter" frr:9342
}

# Dovecot's own OpenMetrics endpoint (the stats process's HTTP listener) with the five example metrics that Debian's
# /usr/share/dovecot/conf.d/10-metrics.conf ships commented out, enabled as shipped. Users in a passwd-file, mail in
# maildirs under the work directory, delivered over LMTP.
start_dovecot() {
  local dir=$WORK/dovecot stats
  DOVECOT_IMAP_PORT=$(free_port)
  DOVECOT_LMTP_PORT=$(free_port)
  stats=$(free_port)
  mkdir -p "$dir/run" "$dir/state" "$dir/home"
  printf 'alice:{PLAIN}secret\nbob:{PLAIN}secret\n' >"$dir/users"
  cat >"$dir/dovecot.conf" <<EOF
protocols = imap lmtp
listen = 127.0.0.1
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 8
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/users
}
userdb {
  driver = static
  args = uid=mail gid=mail home=$dir/home/%u
}
service imap-login {
  inet_listener imap {
    port = $DOVECOT_IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    port = $DOVECOT_LMTP_PORT
  }
}
service stats {
  inet_listener http {
    port = $stats
  }
}
EOF
  sed -n '/^## Example metrics/,/^## Prometheus/{/^#metric /,/^#}/s/^#//p}' /usr/share/dovecot/conf.d/10-metrics.conf \
    >>"$dir/dovecot.conf"
  chown -R mail:mail "$dir/home"
  spawn dovecot dovecot -F -c "$dir/dovecot.conf"
  wait_for 30 http_ok "http://127.0.0.1:$stats/metrics" || return 1
  wait_for 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$DOVECOT_IMAP_PORT" || return 1
  traffic_dovecot
  scrape dovecot "127.0.0.1:$stats" dovecot:9900
}

# IMAP logins (one with a wrong password, one unknown user), mailbox commands (one failing), LMTP deliveries (one
# to an unknown user). Failed logins are delayed by Dovecot (2 s each).
traffic_dovecot() {
  python3 - "$DOVECOT_IMAP_PORT" "$DOVECOT_LMTP_PORT" <<'EOF' || true
import imaplib, smtplib, sys

imap_port, lmtp_port = int(sys.argv[1]), int(sys.argv[2])
with smtplib.LMTP("127.0.0.1", lmtp_port, timeout=10) as lmtp:
    lmtp.sendmail("ops@corpus.localdomain", ["alice"], "Subject: corpus\n\nhello alice\n")
    lmtp.sendmail("ops@corpus.localdomain", ["bob", "nobody"], "Subject: corpus\n\nhello bob\n")
for user, password in [("alice", "secret"), ("bob", "secret"), ("bob", "wrong"), ("carol", "secret")]:
    try:
        imap = imaplib.IMAP4("127.0.0.1", imap_port, timeout=10)
        imap.login(user, password)
    except imaplib.IMAP4.error:
        continue
    imap.select("INBOX")
    imap.search(None, "ALL")
    imap.fetch("1", "(BODY[])")
    try:
        imap.select("NoSuchFolder")
    except imaplib.IMAP4.error:
        pass
    imap.logout()
EOF
}

# Knot Resolver's own web management endpoint (the http module), forwarding corpus.test to BIND and refusing one name.
start_kresd() {
  local dir=$WORK/kresd web
  KRESD_PORT=$(free_port)
  web=$(free_port)
  mkdir -p "$dir/cache"
  cat >"$dir/kresd.conf" <<EOF
net.listen('127.0.0.1', $KRESD_PORT, { kind = 'dns' })
net.listen('127.0.0.1', $web, { kind = 'webmgmt' })
modules.load('http')
cache.open(10 * MB, 'lmdb://$dir/cache')
policy.add(policy.suffix(policy.DENY, { todname('blocked.corpus.test.') }))
policy.add(policy.suffix(policy.STUB({ '127.0.0.1@$BIND_PORT' }), { todname('corpus.test.') }))
EOF
  chown -R knot-resolver:knot-resolver "$dir"
  spawn kresd kresd -n -c "$dir/kresd.conf" "$dir"
  wait_for 30 http_ok "http://127.0.0.1:$web/metrics" || return 1
  traffic_kresd
  scrape kresd "127.0.0.1:$web" kresd:8453
}

traffic_kresd() {
  dns_queries "$KRESD_PORT"
  dns_queries "$KRESD_PORT"
  dig +time=1 +tries=1 -p "$KRESD_PORT" @127.0.0.1 blocked.corpus.test >/dev/null || true
  dig +dnssec +time=1 +tries=1 -p "$KRESD_PORT" @127.0.0.1 corpus.test SOA >/dev/null || true
}

# The smokeping prober pings on its own (every second): the loopback, and a documentation address that never answers.
start_smokeping() {
  local dir=$WORK/smokeping exporter
  exporter=$(free_port)
  mkdir -p "$dir"
  echo "targets: []" >"$dir/smokeping_prober.yml" # the hosts are on the command line
  spawn smokeping prometheus-smokeping-prober --privileged --config.file="$dir/smokeping_prober.yml" \
    --web.listen-address="127.0.0.1:$exporter" 127.0.0.1 ::1 192.0.2.1
  scrape_exporter smokeping "$exporter" smokeping:9374
}

# Rspamd's own OpenMetrics endpoint (the controller worker's /metrics) with Debian's configuration; only the listening
# sockets, the directories and console logging are set (in a local.d under the work directory). Without Redis there
# is no Bayes learning, and the maps hosted by rspamd.com cannot be fetched here.
start_rspamd() {
  local dir=$WORK/rspamd controller
  RSPAMD_PORT=$(free_port)
  controller=$(free_port)
  mkdir -p "$dir/conf/local.d" "$dir/db" "$dir/run" "$dir/log"
  echo "bind_socket = \"127.0.0.1:$controller\";" >"$dir/conf/local.d/worker-controller.inc"
  echo "bind_socket = \"127.0.0.1:$RSPAMD_PORT\";" >"$dir/conf/local.d/worker-normal.inc"
  echo "bind_socket = \"127.0.0.1:$(free_port)\";" >"$dir/conf/local.d/worker-proxy.inc"
  printf 'type = "console";\nlevel = "notice";\n' >"$dir/conf/local.d/logging.inc"
  echo "dns { timeout = 1s; retransmits = 1; }" >"$dir/conf/local.d/options.inc"
  chown -R _rspamd:_rspamd "$dir"
  spawn rspamd rspamd -f -u _rspamd -g _rspamd -c /etc/rspamd/rspamd.conf --var=LOCAL_CONFDIR="$dir/conf" \
    --var=DBDIR="$dir/db" --var=RUNDIR="$dir/run" --var=LOGDIR="$dir/log"
  wait_for 60 http_ok "http://127.0.0.1:$controller/metrics" || return 1
  wait_for 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$RSPAMD_PORT" || return 1
  RSPAMD_CONTROLLER=$controller
  traffic_rspamd
  scrape rspamd "127.0.0.1:$controller" rspamd:11334
}

# A plain message, GTUBE (rejected), a message without headers, and a learn request on the controller.
traffic_rspamd() {
  local dir=$WORK/rspamd
  cat >"$dir/ham.eml" <<'EOF'
From: ops@corpus.localdomain
To: alice@corpus.localdomain
Subject: hello
Message-ID: <1@corpus.localdomain>
Date: Fri, 27 Nov 2026 16:00:00 +0000

hello alice
EOF
  cat >"$dir/spam.eml" <<'EOF'
From: x@spam.example
To: alice@corpus.localdomain
Subject: win

XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X
EOF
  printf 'no headers at all\n' >"$dir/bare.eml"
  rspamc -h "127.0.0.1:$RSPAMD_PORT" "$dir/ham.eml" "$dir/spam.eml" "$dir/bare.eml" >/dev/null 2>&1 || true
  rspamc -h "127.0.0.1:$RSPAMD_CONTROLLER" learn_spam "$dir/spam.eml" >/dev/null 2>&1 || true
}

# Tor as a relay that publishes no descriptor, with an onion service, and its own MetricsPort. Its only directory
# authority is a made-up one on 127.0.0.1 where nothing answers, so it never reaches the real Tor network: without a
# consensus it builds no circuits, and SOCKS requests wait and fail.
start_tor() {
  local dir=$WORK/tor metrics
  TOR_SOCKS_PORT=$(free_port)
  metrics=$(free_port)
  mkdir -p "$dir/data"
  cat >"$dir/torrc" <<EOF
DataDirectory $dir/data
User debian-tor
Log notice stdout
SocksPort 127.0.0.1:$TOR_SOCKS_PORT
ORPort 127.0.0.1:$(free_port)
AssumeReachable 1
PublishServerDescriptor 0
ExitRelay 0
Nickname corpus
ContactInfo ops@corpus.localdomain
DirAuthority corpus orport=1 no-v2 v3ident=0000000000000000000000000000000000000001 127.0.0.1:2 0000000000000000000000000000000000000002
HiddenServiceDir $dir/data/onion
HiddenServicePort 80 127.0.0.1:$(free_port)
MetricsPort 127.0.0.1:$metrics
MetricsPortPolicy accept 127.0.0.1
EOF
  chown -R debian-tor:debian-tor "$dir/data"
  chmod 700 "$dir/data"
  spawn tor tor -f "$dir/torrc"
  traffic_tor
  scrape_exporter tor "$metrics" tor:9035
}

traffic_tor() {
  local name
  for name in www.corpus.test example.org; do
    curl -s -o /dev/null --max-time 2 --socks5-hostname "127.0.0.1:$TOR_SOCKS_PORT" "http://$name/" || true
  done
}

# PowerDNS Authoritative Server's own web server (/metrics), serving corpus.test from a zone file (the bind backend).
start_pdns_auth() {
  local dir=$WORK/pdns-auth web
  PDNS_AUTH_PORT=$(free_port)
  web=$(free_port)
  mkdir -p "$dir"
  corpus_zone >"$dir/corpus.test.zone"
  echo "zone \"corpus.test\" { type master; file \"$dir/corpus.test.zone\"; };" >"$dir/named.conf"
  : >"$dir/pdns.conf"
  spawn pdns-auth pdns_server --config-dir="$dir" --socket-dir="$dir" --daemon=no --guardian=no --disable-syslog \
    --launch=bind --bind-config="$dir/named.conf" --local-address=127.0.0.1 --local-port="$PDNS_AUTH_PORT" \
    --webserver=yes --webserver-address=127.0.0.1 --webserver-port="$web" --webserver-allow-from=127.0.0.1 \
    --setuid=root --setgid=root
  wait_for 30 http_ok "http://127.0.0.1:$web/metrics" || return 1
  traffic_pdns_auth
  scrape pdns_auth "127.0.0.1:$web" pdns_auth:8081
}

traffic_pdns_auth() {
  dns_queries "$PDNS_AUTH_PORT"
  dig +time=1 +tries=1 -p "$PDNS_AUTH_PORT" @127.0.0.1 corpus.test AXFR >/dev/null || true
}

# Prosody's own OpenMetrics endpoint (mod_http_openmetrics on its HTTP port), one virtual host with two accounts and a
# multi-user chat component; no TLS certificates, so clients log in in the clear.
start_prosody() {
  local dir=$WORK/prosody accounts web
  PROSODY_PORT=$(free_port)
  web=$(free_port)
  accounts="$dir/data/corpus%2elocaldomain/accounts"
  mkdir -p "$accounts"
  for user in alice bob; do echo 'return { ["password"] = "secret"; };' >"$accounts/$user.dat"; done
  cat >"$dir/prosody.cfg.lua" <<EOF
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
log = { info = "*console" }
interfaces = { "127.0.0.1" }
c2s_ports = { $PROSODY_PORT }
s2s_ports = { $(free_port) }
http_ports = { $web }
http_interfaces = { "127.0.0.1" }
https_ports = {}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
statistics = "internal"
statistics_interval = "manual"
openmetrics_allow_ips = { "127.0.0.1" }
modules_enabled = { "roster", "saslauth", "disco", "ping", "carbons", "pep", "private", "vcard4", "blocklist",
  "smacks", "mam", "bosh", "websocket", "uptime", "time", "version", "posix", "http_openmetrics" }
VirtualHost "corpus.localdomain"
Component "conference.corpus.localdomain" "muc"
EOF
  chown -R prosody:prosody "$dir"
  spawn prosody runuser -u prosody -- prosody --config "$dir/prosody.cfg.lua" -F
  wait_for 30 http_ok "http://127.0.0.1:$web/metrics" || return 1
  PROSODY_WEB=$web
  traffic_prosody
  scrape prosody "127.0.0.1:$web" prosody:5280
}

# Two clients log in (one with a wrong password first), chat, ping, join a room and resume stream management; a
# BOSH request with a session that does not exist.
traffic_prosody() {
  python3 - "$PROSODY_PORT" <<'EOF' || true
import base64, socket, sys

port, domain = int(sys.argv[1]), "corpus.localdomain"

def session(user, password, stanzas):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(0.5)

    def say(xml):
        sock.sendall(xml.encode())
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except socket.timeout:
            pass
        return answer.decode(errors="replace")

    stream = f"<stream:stream to='{domain}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
    say("<?xml version='1.0'?>" + stream)
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    if "<success" in say(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"):
        say(stream)
        say("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>corpus</resource></bind></iq>")
        for stanza in stanzas:
            say(stanza)
    say("</stream:stream>")
    sock.close()

room = f"ops@conference.{domain}"
session("alice", "wrong", [])
session("nobody", "secret", [])
for user, other in [("alice", "bob"), ("bob", "alice")]:
    session(user, "secret", [
        "<enable xmlns='urn:xmpp:sm:3' resume='true'/>",
        "<presence/>",
        f"<message to='{other}@{domain}' type='chat'><body>hello {other}</body></message>",
        f"<iq type='get' id='ping' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>",
        f"<presence to='{room}/{user}'><x xmlns='http://jabber.org/protocol/muc'/></presence>",
        f"<message to='{room}' type='groupchat'><body>hello room</body></message>",
        f"<presence to='nosuch@conference.{domain}/{user}' type='unavailable'/>",
        "<r xmlns='urn:xmpp:sm:3'/>",
    ])
EOF
  curl -s -o /dev/null --max-time 5 -H "Content-Type: text/xml" -d "<body rid='1' sid='nosuch' xmlns='http://jabber.org/protocol/httpbind'/>" \
    "http://127.0.0.1:$PROSODY_WEB/http-bind" || true
}

# The Docker registry (distribution) with its debug server's Prometheus endpoint, storing on the filesystem with an
# in-memory blob descriptor cache.
start_registry() {
  local dir=$WORK/registry debug
  REGISTRY_PORT=$(free_port)
  debug=$(free_port)
  mkdir -p "$dir/data"
  cat >"$dir/config.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $dir/data
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
  debug:
    addr: 127.0.0.1:$debug
    prometheus:
      enabled: true
      path: /metrics
EOF
  spawn registry docker-registry serve "$dir/config.yml"
  scrape_exporter registry "$debug" registry:5001 || return 1
  traffic_registry
}

# Push an image (two blobs and a manifest), pull it, and ask for a tag and a blob that do not exist.
traffic_registry() {
  python3 - "$REGISTRY_PORT" <<'EOF' || true
import hashlib, json, sys, urllib.error, urllib.request

base = f"http://127.0.0.1:{sys.argv[1]}/v2/corpus/hello"

def call(method, url, body=None, headers={}):
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.headers, error.read()

def push_blob(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    headers, _ = call("POST", base + "/blobs/uploads/")
    location = headers["Location"]
    location = location if location.startswith("http") else base.split("/v2/")[0] + location
    call("PUT", location + ("&" if "?" in location else "?") + "digest=" + digest, data,
         {"Content-Type": "application/octet-stream"})
    return {"digest": digest, "size": len(data)}

config = push_blob(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode())
layer = push_blob(b"corpus layer\n" * 100)
media = "application/vnd.docker.distribution.manifest.v2+json"
manifest = {"schemaVersion": 2, "mediaType": media,
            "config": dict(config, mediaType="application/vnd.docker.container.image.v1+json"),
            "layers": [dict(layer, mediaType="application/vnd.docker.image.rootfs.diff.tar.gzip")]}
call("PUT", base + "/manifests/v1", json.dumps(manifest).encode(), {"Content-Type": media})
for _ in range(3):
    call("GET", base + "/manifests/v1", headers={"Accept": media})
    call("GET", base + "/blobs/" + layer["digest"])
    call("HEAD", base + "/blobs/" + config["digest"])
call("GET", base + "/manifests/nosuch", headers={"Accept": media})
call("GET", base + "/blobs/sha256:" + "0" * 64)
call("GET", base.split("/corpus/")[0] + "/_catalog")
call("GET", base + "/tags/list")
EOF
}

# rclone's remote control daemon (rclone rcd) with its metrics on, copying between two local directories.
start_rclone() {
  local dir=$WORK/rclone i
  RCLONE_PORT=$(free_port)
  mkdir -p "$dir/source/photos" "$dir/copy"
  for i in 1 2 3; do head -c 200000 /dev/urandom >"$dir/source/photos/$i.jpg"; done
  spawn rclone rclone rcd --config=/dev/null --rc-no-auth --rc-enable-metrics --rc-addr="127.0.0.1:$RCLONE_PORT"
  scrape_exporter rclone "$RCLONE_PORT" rclone:5572 || return 1
  traffic_rclone
}

# A copy, a sync after one source file is replaced and one removed, a move, and a copy of a file that does not exist.
traffic_rclone() {
  local dir=$WORK/rclone
  rclone_rc() { curl -s -o /dev/null --max-time 30 -X POST "http://127.0.0.1:$RCLONE_PORT/$1" || true; }
  rclone_rc "sync/copy?srcFs=$dir/source&dstFs=$dir/copy"
  head -c 100000 /dev/urandom >"$dir/source/photos/1.jpg"
  rm -f "$dir/source/photos/2.jpg"
  rclone_rc "sync/sync?srcFs=$dir/source&dstFs=$dir/copy"
  rclone_rc "operations/movefile?srcFs=$dir/copy&srcRemote=photos/3.jpg&dstFs=$dir/copy&dstRemote=photos/three.jpg"
  rclone_rc "operations/copyfile?srcFs=$dir/source&srcRemote=nosuch.jpg&dstFs=$dir/copy&dstRemote=nosuch.jpg"
}

# containerd with its own metrics endpoint ([metrics] address), its state under the temporary directory and the CRI
# plugin off (no Kubernetes here, and it would set up networking).
start_containerd() {
  local dir=$WORK/containerd metrics
  metrics=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[metrics]
  address = "127.0.0.1:$metrics"
EOF
  spawn containerd containerd --config "$dir/config.toml"
  scrape_exporter containerd "$metrics" containerd:1338 30 /v1/metrics || return 1
  traffic_containerd
}

# Namespaces, content, snapshots, leases and containers listed through the gRPC API, and a content blob written.
traffic_containerd() {
  local sock=$WORK/containerd/containerd.sock command
  for command in "namespaces create corpus" "namespaces list" "images list" "containers list" "tasks list" \
    "snapshots list" "leases create" "leases list" "content list" "plugins list" "version" "containers info nosuch"; do
    # shellcheck disable=SC2086 # the words of the command
    ctr --address "$sock" --namespace corpus $command >/dev/null 2>&1 || true
  done
  echo "corpus blob" | ctr --address "$sock" --namespace corpus content ingest corpus-ref >/dev/null 2>&1 || true
}


# The Docker daemon with its own metrics endpoint (metrics-addr, experimental in this release), its data under the
# temporary directory, no bridge network and no iptables rules, and a containerd of its own.
start_dockerd() {
  local dir=$WORK/dockerd metrics
  metrics=$(free_port)
  mkdir -p "$dir"
  DOCKER_HOST="unix://$dir/docker.sock"
  spawn dockerd dockerd --host="$DOCKER_HOST" --data-root="$dir/data" --exec-root="$dir/exec" --pidfile="$dir/docker.pid" \
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false --experimental --metrics-addr="127.0.0.1:$metrics"
  scrape_exporter dockerd "$metrics" dockerd:9323 60 || return 1
  traffic_dockerd
}

# API calls through the docker client: version, info, listings, a volume and a network made and removed, and a pull
# that cannot succeed (no registry answers on its address).
traffic_dockerd() {
  local command
  for command in "version" "info" "ps -a" "images" "volume create corpus" "volume ls" "volume rm corpus" \
    "network create --internal corpus" "network ls" "network rm corpus" "inspect nosuch" \
    "pull 127.0.0.1:1/nosuch:latest" "system df"; do
    # shellcheck disable=SC2086 # the words of the command
    docker --host "$DOCKER_HOST" $command >/dev/null 2>&1 || true
  done
}

# Nebula (overlay network) as a lighthouse with its own Prometheus stats, and a second node that reports to it; no
# tun device on either (tun disabled), so nothing touches the machine's network.
start_nebula() {
  local dir=$WORK/nebula metrics lighthouse node
  metrics=$(free_port)
  lighthouse=$(free_port)
  mkdir -p "$dir"
  nebula-cert ca -name corpus -out-crt "$dir/ca.crt" -out-key "$dir/ca.key" || return 1
  for node in lighthouse:10.99.0.1 node:10.99.0.2; do
    nebula-cert sign -ca-crt "$dir/ca.crt" -ca-key "$dir/ca.key" -name "${node%%:*}" -ip "${node#*:}/24" \
      -out-crt "$dir/${node%%:*}.crt" -out-key "$dir/${node%%:*}.key" || return 1
  done
  nebula_config lighthouse "$lighthouse" "lighthouse: {am_lighthouse: true}" >"$dir/lighthouse.yml"
  cat >>"$dir/lighthouse.yml" <<EOF
stats: {type: prometheus, listen: "127.0.0.1:$metrics", path: /metrics, namespace: nebula, subsystem: "",
  interval: 2s, message_metrics: true, lighthouse_metrics: true}
EOF
  nebula_config node "$(free_port)" "lighthouse: {hosts: [10.99.0.1], interval: 1}
static_host_map: {10.99.0.1: [\"127.0.0.1:$lighthouse\"]}" >"$dir/node.yml"
  spawn nebula-lighthouse nebula -config "$dir/lighthouse.yml"
  scrape_exporter nebula "$metrics" nebula:8080 || return 1
  spawn nebula-node nebula -config "$dir/node.yml"
}

# A Nebula node's configuration: its certificate, UDP port on 127.0.0.1 and lighthouse settings ($3), no tun device.
nebula_config() {
  local name=$1 port=$2 dir=$WORK/nebula
  cat <<EOF
pki: {ca: $dir/ca.crt, cert: $dir/$name.crt, key: $dir/$name.key}
listen: {host: 127.0.0.1, port: $port}
tun: {disabled: true}
firewall: {outbound: [{port: any, proto: any, host: any}], inbound: [{port: any, proto: icmp, host: any}]}
$3
EOF
}

# libvirt's built-in "test" hypervisor driver: a real libvirt connection with one running example domain (no
# libvirtd or KVM needed here); the exporter reads it as it reads a qemu host.
start_libvirt() {
  local exporter
  exporter=$(free_port)
  spawn libvirt-exporter prometheus-libvirt-exporter --libvirt.uri=test:///default \
    --web.listen-address="127.0.0.1:$exporter"
  scrape_exporter libvirt "$exporter" libvirt:9177
}

# snmpd (net-snmp) as the SNMP agent of this machine on a UDP port of 127.0.0.1, read-only community "public" from
# 127.0.0.1 only, and the SNMP exporter probing it with the if_mib module of snmp.yml (upstream's; Debian's is
# empty). One job: the probe (/snmp?module=if_mib&target=..., instance snmpd:161, the agent) and the exporter's own
# /metrics (instance snmp:9116).
start_snmp() {
  local dir=$WORK/snmp exporter
  SNMP_AGENT=$(free_port)
  exporter=$(free_port)
  mkdir -p "$dir/persistent"
  cat >"$dir/snmpd.conf" <<EOF
agentAddress udp:127.0.0.1:$SNMP_AGENT
rocommunity public 127.0.0.1
sysLocation corpus machine room
sysContact corpus@localhost
EOF
  spawn snmpd env SNMP_PERSISTENT_DIR="$dir/persistent" snmpd -f -Lo -C -c "$dir/snmpd.conf" -p "$dir/snmpd.pid"
  wait_for 30 snmpget -v2c -c public -t 1 -r 0 "127.0.0.1:$SNMP_AGENT" 1.3.6.1.2.1.1.3.0 || return 1
  spawn snmp-exporter prometheus-snmp-exporter --config.file="$HERE/snmp.yml" --web.listen-address="127.0.0.1:$exporter"
  scrape_exporter snmp "$exporter" snmp:9116 || return 1
  wait_for 30 http_ok "http://127.0.0.1:$exporter/snmp?module=if_mib&target=127.0.0.1:$SNMP_AGENT" || return 1
}

# Prometheus's job for snmp: the probe of the agent and the exporter's own metrics (see prometheus_config).
prometheus_job_snmp() {
  cat <<EOF
  - job_name: snmp
    static_configs:
      - targets: ["${TARGET[snmp]}"]
        labels: {__metrics_path__: /snmp, __param_module: if_mib, __param_target: "127.0.0.1:$SNMP_AGENT", instance: "snmpd:161"}
      - targets: ["${TARGET[snmp]}"]
        labels: {instance: "${INSTANCE[snmp]}"}
EOF
}

traffic_snmp() {
  # Walks of the whole agent (and one with a wrong community, which the agent ignores), and a little traffic on
  # the loopback interface it reports.
  snmpwalk -v2c -c public "127.0.0.1:$SNMP_AGENT" 1.3.6.1 >/dev/null 2>&1 || true
  snmpwalk -v2c -c wrong -t 1 -r 0 "127.0.0.1:$SNMP_AGENT" 1.3.6.1.2.1.1 >/dev/null 2>&1 || true
  snmpbulkwalk -v2c -c public "127.0.0.1:$SNMP_AGENT" 1.3.6.1.2.1.2.2 >/dev/null 2>&1 || true
}

# --- a user's own services, from PyPI packages ----------------------------------------------------------------------

# A virtualenv $WORK/venv-<name> with the given pip packages (pinned), made once per run (the machine's pip
# configuration decides where from: PyPI or its mirror); prints its path.
python_venv() {
  local name=$1 venv=$WORK/venv-$1
  shift
  if [ ! -x "$venv/bin/python" ]; then
    log "pip installing into venv-$name: $*"
    /usr/bin/python3 -m venv "$venv" >>"$WORK/logs/pip-$name.log" 2>&1 || return 1
    "$venv/bin/pip" install -q "$@" >>"$WORK/logs/pip-$name.log" 2>&1 || return 1
  fi
  echo "$venv"
}

# The directory $WORK/$1 with a Redis of its own (Debian's redis-server) on a free port, without persistence; sets
# REDIS_URL to its database 0 and APP_ENV to the environment the service's Python processes run in (that directory,
# this folder on their path for the app's module, the Redis URL as CORPUS_REDIS_URL).
redis_app() {
  local name=$1 dir=$WORK/$1 port
  port=$(free_port)
  mkdir -p "$dir"
  spawn "$name-redis" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir"
  wait_for 30 redis-cli -p "$port" ping || return 1
  REDIS_URL="redis://127.0.0.1:$port/0"
  APP_ENV=(env -C "$dir" PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$HERE" CORPUS_REDIS_URL="$REDIS_URL")
}

CELERY_PIP=(prometheus-exporter-celery==0.11.2 "celery[redis]==5.5.3" kombu==5.5.4 redis==5.2.1 prometheus-client==0.21.1)

# A Celery application (celery_app.py here: quick, slow, failing and retrying tasks on two queues) with a Redis
# broker and result backend (Debian's redis-server on a free port, no persistence), two workers (celery@worker-1 on
# both queues with two processes, celery@worker-2 on the default queue with one) and danihodovic's celery-exporter
# (PyPI's prometheus-exporter-celery) reading the broker's events and queues.
start_celery() {
  local dir=$WORK/celery venv redis exporter
  venv=$(python_venv celery "${CELERY_PIP[@]}") || return 1
  exporter=$(free_port)
  redis_app celery || return 1
  redis=$REDIS_URL
  CELERY_ENV=("${APP_ENV[@]}")
  spawn celery-exporter env -C "$dir" "$venv/bin/python" -P -c 'from src.cli import cli; cli()' \
    --broker-url "$redis" --host 127.0.0.1 --port "$exporter"
  celery_workers celery "$venv" || return 1
  scrape_exporter celery "$exporter" celery:9808 || return 1
  CELERY_VENV=$venv
  traffic_celery
}

# The two workers of celery_app.py for service $1 (in its APP_ENV, with the virtualenv $2): celery@worker-1 on both
# queues with two processes, celery@worker-2 on the default queue with one; waits until both answer a ping.
celery_workers() {
  local name=$1 venv=$2 worker
  spawn "$name-worker-1" "${APP_ENV[@]}" "$venv/bin/celery" -A celery_app worker -n celery@worker-1 \
    -Q default,images -c 2 --loglevel INFO
  spawn "$name-worker-2" "${APP_ENV[@]}" "$venv/bin/celery" -A celery_app worker -n celery@worker-2 \
    -Q default -c 1 --loglevel INFO
  for worker in worker-1 worker-2; do
    wait_for 60 "${APP_ENV[@]}" "$venv/bin/celery" -A celery_app inspect ping -d "celery@$worker" || return 1
  done
}

# Tasks of every kind for celery_app.py's workers (run with the environment and python given): quick ones, card
# charges of which some fail (ValueError), e-mails that are retried once, one scheduled task revoked before it runs,
# and image resizes (a few seconds each, on the images queue that only worker-1 reads with two processes), so that
# tasks are running and waiting while Prometheus scrapes.
celery_tasks() {
  "$@" - "$SCRAPE_SECONDS" <<'EOF'
import sys

import celery_app as shop

seconds = int(sys.argv[1])
for i in range(20):
    shop.add.delay(i, i)
for amount in (5, 10, -1, 20, -2, 30):
    shop.charge_card.delay(amount)
for address in ("ann@example.org", "bob@example.org", "eve@example.org"):
    shop.send_email.delay(address)
shop.add.apply_async((1, 1), countdown=3600).revoke()
for _ in range(6):
    shop.resize_image.delay(seconds / 4)
EOF
}

traffic_celery() {
  celery_tasks "${CELERY_ENV[@]}" "$CELERY_VENV/bin/python" >>"$WORK/logs/celery-client.log" 2>&1 || true
}

DJANGO_PIP=(Django==5.2.19 django-prometheus==2.5.0 prometheus-client==0.26.0)

# A Django project (django_shop/ here: an Order model, views to list, add, read, change and delete orders, and a
# report view that fails) instrumented with django-prometheus as its README says (middleware, the SQLite database
# and local-memory cache wrappers, the model mixin, migrations exported), served by Django's own server.
start_django() {
  local dir=$WORK/django venv port
  venv=$(python_venv django "${DJANGO_PIP[@]}") || return 1
  port=$(free_port)
  mkdir -p "$dir"
  DJANGO_ENV=(env -C "$dir" PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$HERE" DJANGO_SETTINGS_MODULE=django_shop.settings CORPUS_DJANGO_DIR="$dir")
  "${DJANGO_ENV[@]}" "$venv/bin/python" -m django migrate --run-syncdb >>"$WORK/logs/django.log" 2>&1 || return 1
  spawn django "${DJANGO_ENV[@]}" "$venv/bin/python" -m django runserver --noreload "127.0.0.1:$port"
  scrape_exporter django "$port" django:8000 || return 1
  DJANGO_URL=http://127.0.0.1:$port
  traffic_django
}

# Orders added (POST), listed (a cache miss, then hits), read, changed and deleted; a missing order and a missing
# page (404), the failing report (500, a database error), a form POST with a larger body.
traffic_django() {
  local url=$DJANGO_URL i
  for i in 1 2 3 4 5; do
    curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' -d "{\"item\": \"pear\", \"quantity\": $i}" \
      "$url/orders/" || true
  done
  for i in 1 2 3 4; do curl -fsS -o /dev/null "$url/orders/" || true; done
  curl -sS -o /dev/null "$url/orders/1/" || true
  curl -sS -o /dev/null -X PUT "$url/orders/1/" || true
  curl -sS -o /dev/null -X DELETE "$url/orders/2/" || true
  curl -sS -o /dev/null "$url/orders/999/" || true
  curl -sS -o /dev/null "$url/nowhere/" || true
  curl -sS -o /dev/null "$url/report/" || true
  curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' \
    -d "{\"item\": \"$(printf 'x%.0s' $(seq 30))\", \"quantity\": 7}" "$url/orders/" || true
}

DASK_PIP=(distributed==2026.8.0 dask==2026.8.0 prometheus_client==0.26.0)

# Dask (distributed): a scheduler and two workers (two, so that results move between workers), each serving
# /metrics on its dashboard port (prometheus_client installed; bokeh is not needed for /metrics). The workers have a
# small memory limit, so that results are spilled to disk.
start_dask() {
  local dir=$WORK/dask venv scheduler dashboard worker1 worker2
  venv=$(python_venv dask "${DASK_PIP[@]}") || return 1
  scheduler=$(free_port)
  dashboard=$(free_port)
  worker1=$(free_port)
  worker2=$(free_port)
  mkdir -p "$dir"
  DASK_SCHEDULER="tcp://127.0.0.1:$scheduler"
  spawn dask-scheduler "$venv/bin/dask" scheduler --host 127.0.0.1 --port "$scheduler" \
    --dashboard-address "127.0.0.1:$dashboard"
  wait_for 60 http_ok "http://127.0.0.1:$dashboard/metrics" || return 1
  spawn dask-worker-1 "$venv/bin/dask" worker "$DASK_SCHEDULER" --host 127.0.0.1 --nthreads 4 --memory-limit 200MB \
    --local-directory "$dir/worker-1" --dashboard-address "127.0.0.1:$worker1" --name worker-1
  spawn dask-worker-2 "$venv/bin/dask" worker "$DASK_SCHEDULER" --host 127.0.0.1 --nthreads 2 --memory-limit 200MB \
    --local-directory "$dir/worker-2" --dashboard-address "127.0.0.1:$worker2" --name worker-2
  scrape_exporter dask "$dashboard" dask-scheduler:8787 || return 1
  wait_for 60 http_ok "http://127.0.0.1:$worker1/metrics" || return 1
  wait_for 60 http_ok "http://127.0.0.1:$worker2/metrics" || return 1
  DASK_WORKERS=("127.0.0.1:$worker1" "127.0.0.1:$worker2")
  traffic_dask
}

# Prometheus's job for dask: the scheduler and the two workers, each with its own instance label.
prometheus_job_dask() {
  cat <<EOF
  - job_name: dask
    static_configs:
      - targets: ["${TARGET[dask]}"]
        labels: {instance: "${INSTANCE[dask]}"}
      - targets: ["${DASK_WORKERS[0]}"]
        labels: {instance: "dask-worker-1:8788"}
      - targets: ["${DASK_WORKERS[1]}"]
        labels: {instance: "dask-worker-2:8789"}
EOF
}

# A client submits tasks: fifty small ones summed on one worker (results move between workers), one that raises,
# six of 25 MB each (more than the workers' spill threshold, so some go to disk and are read back) and one whose
# inputs are bigger than any worker's memory limit (refused). Another client keeps tasks running (one holding a lease
# of a semaphore, others waiting for it) while Prometheus scrapes, so that the task and semaphore gauges have series.
traffic_dask() {
  local venv
  venv=$(python_venv dask "${DASK_PIP[@]}") || return 1
  spawn dask-busy "$venv/bin/python" -c '
import sys, time
from distributed import Client, Semaphore, wait

def hold(i, seconds):
    with Semaphore(max_leases=1, name="corpus"):
        time.sleep(seconds)

with Client(sys.argv[1], timeout=30) as client:
    wait(client.map(hold, range(2), seconds=float(sys.argv[2]), pure=False))
' "$DASK_SCHEDULER" "$SCRAPE_SECONDS"
  "$venv/bin/python" - "$DASK_SCHEDULER" >>"$WORK/logs/dask-client.log" 2>&1 <<'EOF' || true
import sys
from distributed import Client, wait

def inc(x): return x + 1
def add(*xs): return sum(xs)
def fail(x): raise ValueError("corpus")
def big(i): return bytearray(25_000_000)
def size(*xs): return sum(len(x) for x in xs)

with Client(sys.argv[1], timeout=30) as client:
    print(client.submit(add, *client.map(inc, range(50))).result())
    try:
        client.submit(fail, 1).result()
    except ValueError:
        pass
    bigs = client.map(big, range(6))
    wait(bigs)
    print(client.submit(size, *bigs[:3]).result())
    try:
        client.submit(size, *bigs, pure=False).result()
    except MemoryError:
        pass
EOF
}

SYNAPSE_PIP=(matrix-synapse==1.163.2 prometheus_client==0.26.0)

# Synapse (Matrix homeserver) with its metrics listener on, SQLite as its database, a client listener and no
# federation (no trusted key servers). The configuration is Synapse's generated one (keys and secrets) with ours
# laid over it.
start_synapse() {
  local dir=$WORK/synapse venv client metrics
  venv=$(python_venv synapse "${SYNAPSE_PIP[@]}") || return 1
  client=$(free_port)
  metrics=$(free_port)
  mkdir -p "$dir"
  (cd "$dir" && "$venv/bin/python" -m synapse.app.homeserver --server-name corpus.localdomain \
    --config-path "$dir/homeserver.yaml" --data-directory "$dir" --generate-config --report-stats=no) \
    >>"$WORK/logs/synapse.log" 2>&1 || return 1
  cat >"$dir/corpus.yaml" <<EOF
listeners:
  - {port: $client, bind_addresses: [127.0.0.1], type: http, tls: false, resources: [{names: [client], compress: false}]}
  - {port: $metrics, bind_addresses: [127.0.0.1], type: metrics}
enable_metrics: true
trusted_key_servers: []
suppress_key_server_warning: true
EOF
  spawn synapse "$venv/bin/python" -m synapse.app.homeserver -c "$dir/homeserver.yaml" -c "$dir/corpus.yaml"
  SYNAPSE_URL="http://127.0.0.1:$client"
  scrape_exporter synapse "$metrics" synapse:9000 60 /_synapse/metrics || return 1
  wait_for 60 http_ok "$SYNAPSE_URL/_matrix/client/versions" || return 1
  local secret user
  secret=$(sed -n 's/^registration_shared_secret: "\(.*\)"$/\1/p' "$dir/homeserver.yaml")
  for user in "alice -a" "bob --no-admin"; do
    # shellcheck disable=SC2086 # the user and its admin option
    set -- $user
    "$venv/bin/register_new_matrix_user" -u "$1" -p "secret-$1" "$2" -k "$secret" "$SYNAPSE_URL" \
      >>"$WORK/logs/synapse.log" 2>&1 || return 1
  done
  traffic_synapse
}

# Logins (one with a wrong password, one unknown user), a private room that one user makes and the other joins,
# messages from both (the second time, Synapse's rate limits may refuse some of it: kept, that is traffic too), typing, syncs, history, a profile change, a media upload, requests for a room that does not
# exist, an admin API call by an admin and one with a bad token, and a logout.
traffic_synapse() {
  python3 - "$SYNAPSE_URL" >>"$WORK/logs/synapse-client.log" 2>&1 <<'EOF' || true
import json, sys, urllib.error, urllib.request

base = sys.argv[1]

def call(method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, method=method, data=data)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        return {"status": error.code}

def login(user, password):
    identifier = {"type": "m.id.user", "user": user}
    body = {"type": "m.login.password", "identifier": identifier, "password": password}
    return call("POST", "/_matrix/client/v3/login", body).get("access_token")

login("alice", "wrong")
login("nobody", "secret")
alice, bob = login("alice", "secret-alice"), login("bob", "secret-bob")
body = {"name": "corpus", "preset": "private_chat", "invite": ["@bob:corpus.localdomain"]}
room = call("POST", "/_matrix/client/v3/createRoom", body, alice).get("room_id", "!limited:corpus.localdomain")
call("POST", f"/_matrix/client/v3/join/{room}", {}, bob)
for i, token in enumerate([alice, bob, alice, bob, alice]):
    body = {"msgtype": "m.text", "body": f"hello {i}"}
    call("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/txn{i}-{token[-6:]}", body, token)
call("PUT", f"/_matrix/client/v3/rooms/{room}/typing/@bob:corpus.localdomain", {"typing": True, "timeout": 3000}, bob)
call("GET", "/_matrix/client/v3/sync?timeout=0", token=alice)
call("GET", "/_matrix/client/v3/sync?timeout=0", token=bob)
call("GET", f"/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=10", token=bob)
call("PUT", "/_matrix/client/v3/profile/@alice:corpus.localdomain/displayname", {"displayname": "Alice"}, alice)
call("POST", "/_matrix/media/v3/upload?filename=a.txt", {"hello": "media"}, alice)
call("GET", "/_matrix/client/v3/rooms/!nosuch:corpus.localdomain/state", token=alice)
call("GET", "/_synapse/admin/v2/users?limit=10", token=alice)
call("GET", "/_matrix/client/v3/account/whoami", token="invalid")
call("POST", "/_matrix/client/v3/logout", {}, bob)
print(room)
EOF
}

# --- a user's own services, from npm packages -----------------------------------------------------------------------

# A copy of the app directory bench/corpora/$1 in $WORK/$1 with its npm packages installed (from the registry npm is
# configured with) as its package-lock.json pins them (npm ci), or without a lock as its package.json pins them, with
# no install scripts and the native packages named after $1 built from source (their install scripts would download
# prebuilt binaries from GitHub); prints its path.
npm_app() {
  local name=$1 dir=$WORK/$1
  shift
  if [ ! -d "$dir/node_modules" ]; then
    log "npm installing into $name"
    mkdir -p "$dir" && cp -r "$HERE/$name/." "$dir/" || return 1
    if [ -f "$dir/package-lock.json" ]; then
      (cd "$dir" && npm ci --no-audit --no-fund) >>"$WORK/logs/npm-$name.log" 2>&1 || return 1
    else
      (cd "$dir" && npm install --no-audit --no-fund --ignore-scripts &&
        if [ "$#" -gt 0 ]; then npm rebuild --build-from-source "$@"; fi) >>"$WORK/logs/npm-$name.log" 2>&1 || return 1
    fi
  fi
  echo "$dir"
}

# A small Express service (express_app/ here: users and orders read, added and deleted, a slow report and a failing
# one) instrumented with express-prom-bundle (its HTTP request histogram by method, path and status code) and
# prom-client's default metrics, all on its own /metrics; versions pinned by express_app/package-lock.json.
start_express() { node_shop express; }

# Service $1's app directory $1_app/ here (npm_app) run as `node app.js PORT` on a free port and scraped as
# instance $1:3000; its base URL in SHOP_URL[$1], then its traffic.
declare -A SHOP_URL
node_shop() {
  local service=$1 dir port
  dir=$(npm_app "${service}_app") || return 1
  port=$(free_port)
  spawn "$service" env -C "$dir" node app.js "$port"
  scrape_exporter "$service" "$port" "$service:3000" || return 1
  SHOP_URL[$service]=http://127.0.0.1:$port
  "traffic_$service"
}

# The traffic of the small web services with users and orders (express_app/, fastapi_shop.py, fastify_app/) at the
# base URL $1: 200s on routes with path parameters, orders added (POST, 201; one without an item, 400 or 422) and
# deleted (204), 404s (a missing order, a missing page), a 500 (a route that throws) and the slow report, a few at a
# time.
shop_api_traffic() {
  local url=$1 i
  for i in 1 2 3 4 5 6; do curl -fsS -o /dev/null "$url/api/users/$i" || true; done
  for i in 1 2 3; do
    curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' -d "{\"item\": \"pear\", \"quantity\": $i}" \
      "$url/api/orders" || true
  done
  curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' -d '{}' "$url/api/orders" || true
  for i in 1 2; do curl -fsS -o /dev/null "$url/api/orders" || true; done
  curl -fsS -o /dev/null "$url/api/orders/1" || true
  curl -sS -o /dev/null "$url/api/orders/999" || true
  curl -sS -o /dev/null -X DELETE "$url/api/orders/2" || true
  curl -sS -o /dev/null "$url/nowhere" || true
  curl -sS -o /dev/null "$url/api/broken" || true
  curl -sS -o /dev/null "$url/api/report" &
  local slow=$!
  curl -sS -o /dev/null "$url/api/report" || true
  wait "$slow" || true
}

traffic_express() { shop_api_traffic "${SHOP_URL[express]}"; }

# The n8n workflow automation server (n8n_app/ here: n8n 2.8.4, the last release that runs on Node.js 20, pinned in
# its package.json; its transitive packages are not locked: the lock is 0.9 MB), SQLite, with its metrics on (every
# N8N_METRICS_INCLUDE_* option but the queue's, which needs Redis in queue mode) and everything that calls the
# internet off (diagnostics, version notifications, templates, licence renewal, community packages, AI).
start_n8n() {
  local dir port broker
  dir=$(npm_app n8n_app sqlite3) || return 1
  port=$(free_port)
  broker=$(free_port)
  mkdir -p "$dir/home"
  N8N_ENV=(env -C "$dir" HOME="$dir/home" N8N_USER_FOLDER="$dir/home" N8N_PORT="$port" N8N_LISTEN_ADDRESS=127.0.0.1
    N8N_HOST=127.0.0.1 N8N_PROTOCOL=http N8N_SECURE_COOKIE=false N8N_RUNNERS_BROKER_PORT="$broker"
    N8N_RUNNERS_BROKER_LISTEN_ADDRESS=127.0.0.1 DB_TYPE=sqlite N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS=false
    N8N_METRICS=true N8N_METRICS_INCLUDE_DEFAULT_METRICS=true N8N_METRICS_INCLUDE_API_ENDPOINTS=true
    N8N_METRICS_INCLUDE_CACHE_METRICS=true N8N_METRICS_INCLUDE_MESSAGE_EVENT_BUS_METRICS=true
    N8N_METRICS_INCLUDE_WORKFLOW_ID_LABEL=true N8N_METRICS_INCLUDE_NODE_TYPE_LABEL=true
    N8N_METRICS_INCLUDE_CREDENTIAL_TYPE_LABEL=true N8N_METRICS_INCLUDE_API_PATH_LABEL=true
    N8N_METRICS_INCLUDE_API_METHOD_LABEL=true N8N_METRICS_INCLUDE_API_STATUS_CODE_LABEL=true
    N8N_METRICS_INCLUDE_WORKFLOW_STATISTICS=true
    N8N_DIAGNOSTICS_ENABLED=false N8N_DIAGNOSTICS_CONFIG_FRONTEND= N8N_DIAGNOSTICS_CONFIG_BACKEND=
    N8N_VERSION_NOTIFICATIONS_ENABLED=false N8N_TEMPLATES_ENABLED=false N8N_PERSONALIZATION_ENABLED=false
    N8N_HIRING_BANNER_ENABLED=false N8N_DYNAMIC_BANNERS_ENABLED=false EXTERNAL_FRONTEND_HOOKS_URLS=
    N8N_COMMUNITY_PACKAGES_ENABLED=false N8N_AI_ENABLED=false N8N_LICENSE_AUTO_RENEW_ENABLED=false)
  spawn n8n "${N8N_ENV[@]}" node node_modules/n8n/bin/n8n start
  scrape_exporter n8n "$port" n8n:5678 120 || return 1
  N8N_URL=http://127.0.0.1:$port
  # /metrics answers before the REST API is mounted (until then the editor's page answers every path).
  wait_for 120 n8n_rest_ready || return 1
  # The owner account, logged in (cookie jar), and the three workflows of n8n_app/ made and activated.
  local jar=$dir/cookies workflow answer
  curl -fsS -o /dev/null -c "$jar" -X POST -H 'Content-Type: application/json' "$N8N_URL/rest/owner/setup" \
    -d '{"email": "owner@corpus.localdomain", "firstName": "Ann", "lastName": "Owner", "password": "Corpus-secret-1"}' ||
    return 1
  for workflow in hello fail slow; do
    answer=$(curl -fsS -b "$jar" -X POST -H 'Content-Type: application/json' "$N8N_URL/rest/workflows" \
      -d @"$dir/workflow-$workflow.json") || return 1
    answer=$(python3 -c 'import json, sys; data = json.load(sys.stdin)["data"]; print(data["id"], data["versionId"])' \
      <<<"$answer") || return 1
    curl -fsS -o /dev/null -b "$jar" -X POST -H 'Content-Type: application/json' \
      "$N8N_URL/rest/workflows/${answer% *}/activate" -d "{\"versionId\": \"${answer#* }\"}" || return 1
  done
  N8N_JAR=$jar
  traffic_n8n
}

n8n_rest_ready() { curl -fsS --max-time 10 "$N8N_URL/rest/settings" | grep -q '^{"data"'; }

# Webhook calls of the three workflows (greetings, a report whose Code node throws, an export that waits 2 s),
# a webhook that does not exist (404), a login with a wrong password (401), workflow and execution lists.
traffic_n8n() {
  local url=$N8N_URL i
  for i in 1 2 3 4 5; do
    curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' -d "{\"n\": $i}" "$url/webhook/hello" || true
  done
  for i in 1 2; do curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' -d '{}' "$url/webhook/report" || true; done
  curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' -d '{}' "$url/webhook/export" &
  local slow=$!
  curl -sS -o /dev/null -X POST -d '{}' "$url/webhook/nowhere" || true
  curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' "$url/rest/login" \
    -d '{"emailOrLdapLoginId": "owner@corpus.localdomain", "password": "wrong"}' || true
  curl -fsS -o /dev/null -b "$N8N_JAR" "$url/rest/workflows" || true
  curl -fsS -o /dev/null -b "$N8N_JAR" "$url/rest/executions" || true
  wait "$slow" || true
}

# collectd (Debian's collectd-core) in the foreground with a configuration of its own, reading this machine with the
# usual read plugins that work unprivileged (CPU per core in percent, memory, swap, virtual memory, load, interfaces,
# file systems, disks, processes with collectd's own, uptime, logged-in users, TCP connection states, IP protocol
# counters, file handles, entropy, context switches, interrupts, SysV IPC, connection tracking) and its own internal
# statistics, every 5 seconds; the write_prometheus plugin serves them on 127.0.0.1. File systems are only /, /dev
# and /dev/shm, and TCP connections only their sum over all ports (every listening port would be the other services'
# random ones).
start_collectd() {
  local dir=$WORK/collectd port
  port=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/collectd.conf" <<EOF
Hostname "corpus"
BaseDir "$dir"
PIDFile "$dir/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
Interval 5
CollectInternalStats true
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File STDOUT
</Plugin>
LoadPlugin cpu
LoadPlugin memory
LoadPlugin swap
LoadPlugin vmem
LoadPlugin load
LoadPlugin interface
LoadPlugin df
LoadPlugin disk
LoadPlugin processes
LoadPlugin uptime
LoadPlugin users
LoadPlugin tcpconns
LoadPlugin protocols
LoadPlugin fhcount
LoadPlugin entropy
LoadPlugin contextswitch
LoadPlugin irq
LoadPlugin ipc
LoadPlugin conntrack
LoadPlugin write_prometheus
<Plugin cpu>
  ReportByCpu true
  ValuesPercentage true
</Plugin>
<Plugin processes>
  Process "collectd"
  ProcessMatch "prometheus" "^prometheus"
</Plugin>
<Plugin df>
  MountPoint "/"
  MountPoint "/dev"
  MountPoint "/dev/shm"
</Plugin>
<Plugin tcpconns>
  ListeningPorts false
  AllPortsSummary true
</Plugin>
<Plugin write_prometheus>
  Host "127.0.0.1"
  Port "$port"
</Plugin>
EOF
  spawn collectd collectd -f -C "$dir/collectd.conf"
  scrape_exporter collectd "$port" collectd:9103 || return 1
  traffic_collectd
}

# A file written to and read back from the temporary directory (synced, so the disk sees it), and some loopback
# traffic to collectd's own endpoint.
traffic_collectd() {
  local dir=$WORK/collectd i
  dd if=/dev/zero of="$dir/traffic" bs=1M count=20 conv=fsync status=none || true
  cat "$dir/traffic" >/dev/null || true
  rm -f "$dir/traffic"
  for i in 1 2 3 4 5; do curl -fsS -o /dev/null "http://${TARGET[collectd]}/metrics" || true; done
}

JUPYTERHUB_PIP=(jupyterhub==6.1.1 jupyter_server==2.21.1 prometheus_client==0.26.0 SQLAlchemy==2.1.9 tornado==6.6.1)

# JupyterHub (PyPI) behind configurable-http-proxy (npm, jupyterhub_proxy/ here, pinned by its package-lock.json),
# SQLite, the dummy authenticator (one shared password), the simple local process spawner starting jupyter_server's
# single-user server from the same virtualenv (home directories under the temporary directory), /hub/metrics open
# without a token, and an API service token for the traffic.
start_jupyterhub() {
  local dir=$WORK/jupyterhub venv proxy port hub api
  venv=$(python_venv jupyterhub "${JUPYTERHUB_PIP[@]}") || return 1
  proxy=$(npm_app jupyterhub_proxy) || return 1
  port=$(free_port)
  hub=$(free_port)
  api=$(free_port)
  mkdir -p "$dir/home"
  cat >"$dir/jupyterhub_config.py" <<EOF
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = $port
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = $hub
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:$api"
c.ConfigurableHTTPProxy.command = ["$proxy/node_modules/.bin/configurable-http-proxy"]
c.JupyterHub.db_url = "sqlite:///$dir/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "$dir/cookie_secret"
c.JupyterHub.pid_file = "$dir/jupyterhub.pid"
c.JupyterHub.authenticate_prometheus = False
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "corpus-secret"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {"alice"}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "$dir/home/{username}"
c.Spawner.cmd = ["$venv/bin/jupyterhub-singleuser"]
c.Spawner.args = ["--ServerApp.allow_root=True"]
c.JupyterHub.services = [{"name": "corpus", "api_token": "corpus-token-0123456789abcdef"}]
c.JupyterHub.load_roles = [{"name": "corpus", "services": ["corpus"],
  "scopes": ["admin:users", "admin:servers", "access:servers", "list:users"]}]
EOF
  spawn jupyterhub env -C "$dir" PATH="$venv/bin:$PATH" "$venv/bin/jupyterhub" -f "$dir/jupyterhub_config.py"
  scrape_exporter jupyterhub "$port" jupyterhub:8000 60 /hub/metrics || return 1
  JUPYTERHUB_URL=http://127.0.0.1:$port
  traffic_jupyterhub
}

# Users made through the REST API (alice, bob, carol; one already there, 409), servers spawned for alice and bob and
# used through the proxy (the single-user server's API, a missing file), bob's stopped again; logins through the
# form with the page's _xsrf cookie (one with a wrong password), a request for a user that does not exist.
traffic_jupyterhub() {
  python3 - "$JUPYTERHUB_URL" >>"$WORK/logs/jupyterhub-client.log" 2>&1 <<'EOF' || true
import http.cookiejar, json, sys, time, urllib.error, urllib.parse, urllib.request

base = sys.argv[1]
token = {"Authorization": "token corpus-token-0123456789abcdef"}

def call(method, path, body=None, headers=token, opener=urllib.request.build_opener()):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(base + path, method=method, data=data, headers=dict(headers))
    try:
        with opener.open(request, timeout=60) as answer:
            print(method, path, answer.status)
            return answer.read()
    except urllib.error.HTTPError as error:
        print(method, path, error.code)
        return b""

for user in ("alice", "bob", "carol", "alice"):
    call("POST", f"/hub/api/users/{user}")
for user in ("alice", "bob"):
    call("POST", f"/hub/api/users/{user}/server")
for user in ("alice", "bob"):
    for _ in range(60):
        if json.loads(call("GET", f"/hub/api/users/{user}") or b"{}").get("servers", {}).get("", {}).get("ready"):
            break
        time.sleep(1)
for _ in range(3):
    call("GET", "/user/alice/api/status")
    call("GET", "/user/alice/api/contents")
call("GET", "/user/alice/api/contents/missing.ipynb")
call("GET", "/user/bob/api/kernelspecs")
call("DELETE", "/hub/api/users/bob/server")
call("GET", "/hub/api/users/nobody")
call("GET", "/hub/api/users")
for password in ("wrong", "corpus-secret"):
    cookies = http.cookiejar.CookieJar()
    jar = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    call("GET", "/hub/login", headers={}, opener=jar)
    xsrf = next((cookie.value for cookie in cookies if cookie.name == "_xsrf"), "")
    form = urllib.parse.urlencode({"username": "carol", "password": password, "_xsrf": xsrf}).encode()
    call("POST", "/hub/login", form, headers={"Content-Type": "application/x-www-form-urlencoded"}, opener=jar)
EOF
}

RQ_PIP=(rq==2.12.0 rq-exporter==3.1.0 redis==5.3.1 prometheus-client==0.26.0)

# RQ jobs (rq_app.py here: quick, slow, failing and retried ones on the queues high, default and low) with a Redis
# of their own (Debian's redis-server on a free port, no persistence), two workers (worker-1 on high and default with
# the scheduler, worker-2 on default and low) and rq-exporter (PyPI) reading workers, queues and job registries.
start_rq() {
  local venv redis exporter
  venv=$(python_venv rq "${RQ_PIP[@]}") || return 1
  redis_app rq || return 1
  redis=$REDIS_URL
  RQ_ENV=("${APP_ENV[@]}")
  exporter=$(free_port)
  spawn rq-worker-1 "${RQ_ENV[@]}" "$venv/bin/rq" worker --url "$redis" -n worker-1 --with-scheduler high default
  spawn rq-worker-2 "${RQ_ENV[@]}" "$venv/bin/rq" worker --url "$redis" -n worker-2 default low
  spawn rq-exporter "${RQ_ENV[@]}" "$venv/bin/rq-exporter" --host 127.0.0.1 --port "$exporter" --redis-url "$redis"
  wait_for 60 sh -c "[ \"\$(redis-cli -u $redis scard rq:workers)\" -ge 2 ]" || return 1
  scrape_exporter rq "$exporter" rq:9726 || return 1
  RQ_VENV=$venv
  traffic_rq
}

# Jobs of every kind (rq_app.enqueue): quick ones, card charges of which some fail, e-mails of which one fails
# again on its retry, slow image resizes on the low queue (a quarter of the scrape time each) with a job waiting for
# the last of them, and two jobs scheduled hours ahead.
traffic_rq() {
  "${RQ_ENV[@]}" "$RQ_VENV/bin/python" -m rq_app "$SCRAPE_SECONDS" >>"$WORK/logs/rq-client.log" 2>&1 || true
}

KEA_PIP=(kea-exporter==0.7.1 prometheus-client==0.26.0 requests==2.34.2 click==8.5.1)

# ISC Kea's DHCPv4 server (Debian's kea-dhcp4-server) on 127.0.0.1 with non-standard server and client ports, its
# leases in a CSV file, two subnets for clients relayed through 127.0.0.1 (perfdhcp sends as a relay): 192.0.2.0/27
# with a pool of 20 addresses for the client class "office" and 198.51.100.0/28 with 5 for the class "lab" (MAC
# addresses 00:0c:02:...); a control socket, and the control agent (kea-ctrl-agent) serving it over HTTP. mweinelt's
# kea-exporter (PyPI) reads the statistics through the control agent (it only knows top-level subnets, not those of
# a shared network). perfdhcp's clients ask for addresses (DISCOVER, OFFER, REQUEST, ACK): 22 of the office and
# 8 of the lab, more than either pool holds, so some allocations fail.
start_kea() {
  local dir=$WORK/kea venv agent exporter
  venv=$(python_venv kea "${KEA_PIP[@]}") || return 1
  KEA_SERVER_PORT=$(free_port)
  KEA_CLIENT_PORT=$(free_port)
  agent=$(free_port)
  exporter=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/kea-dhcp4.conf" <<EOF
{"Dhcp4": {
  "interfaces-config": {"interfaces": ["lo/127.0.0.1"], "dhcp-socket-type": "udp"},
  "control-socket": {"socket-type": "unix", "socket-name": "$dir/kea4.sock"},
  "lease-database": {"type": "memfile", "persist": true, "name": "$dir/kea-leases4.csv", "lfc-interval": 3600},
  "valid-lifetime": 600, "renew-timer": 200, "rebind-timer": 400,
  "client-classes": [{"name": "lab", "test": "substring(pkt4.mac, 0, 3) == 0x000c02"},
    {"name": "office", "test": "not member('lab')"}],
  "subnet4": [
    {"id": 2, "subnet": "198.51.100.0/28", "pools": [{"pool": "198.51.100.2 - 198.51.100.6"}], "client-class": "lab",
     "relay": {"ip-addresses": ["127.0.0.1"]}, "option-data": [{"name": "routers", "data": "198.51.100.1"}]},
    {"id": 1, "subnet": "192.0.2.0/27", "pools": [{"pool": "192.0.2.10 - 192.0.2.29"}], "client-class": "office",
     "relay": {"ip-addresses": ["127.0.0.1"]}, "option-data": [{"name": "routers", "data": "192.0.2.1"}]}],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "INFO"}]
}}
EOF
  cat >"$dir/kea-ctrl-agent.conf" <<EOF
{"Control-agent": {"http-host": "127.0.0.1", "http-port": $agent,
  "control-sockets": {"dhcp4": {"socket-type": "unix", "socket-name": "$dir/kea4.sock"}},
  "loggers": [{"name": "kea-ctrl-agent", "output_options": [{"output": "stdout"}], "severity": "INFO"}]}}
EOF
  spawn kea-dhcp4 env KEA_PIDFILE_DIR="$dir" KEA_LOCKFILE_DIR="$dir" \
    kea-dhcp4 -c "$dir/kea-dhcp4.conf" -p "$KEA_SERVER_PORT" -P "$KEA_CLIENT_PORT"
  wait_for 30 test -S "$dir/kea4.sock" || return 1
  spawn kea-ctrl-agent env KEA_PIDFILE_DIR="$dir" KEA_LOCKFILE_DIR="$dir" kea-ctrl-agent -c "$dir/kea-ctrl-agent.conf"
  spawn kea-exporter "$venv/bin/kea-exporter" -a 127.0.0.1 -p "$exporter" "http://127.0.0.1:$agent"
  kea_clients -r 10 -R 22 -n 22 -p 6 -b mac=00:0c:01:00:00:00
  kea_clients -r 10 -R 8 -n 8 -p 4 -b mac=00:0c:02:00:00:00
  scrape_exporter kea "$exporter" kea:9547
}

# perfdhcp as a relay on 127.0.0.1 with the given options.
kea_clients() {
  timeout 60 perfdhcp -4 -N "$KEA_SERVER_PORT" -L "$KEA_CLIENT_PORT" -l 127.0.0.1 "$@" 127.0.0.1 \
    >>"$WORK/logs/perfdhcp.log" 2>&1 || true
}

# Office clients that come back for their addresses, renew and release them, and a datagram that is not DHCP.
traffic_kea() {
  kea_clients -r 6 -f 2 -F 2 -R 10 -n 10 -p 6 -b mac=00:0c:01:00:00:00
  python3 -c 'import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"not dhcp", ("127.0.0.1", int(sys.argv[1])))' \
    "$KEA_SERVER_PORT" || true
}

# PM2 (npm, pm2_app/ here, pinned by its package-lock.json) as its daemon runs it, with PM2_HOME under the temporary
# directory and no version check: the apps of pm2_app/ecosystem.config.js (the API in cluster mode with two
# instances, a worker that crashes every few seconds, a one-shot mailer) and pm2-metrics among them, its host and
# port set as a PM2 module's configuration (pm2 set). The daemon leaves its session: pm2 kill stops it.
start_pm2() {
  local dir exporter pm2
  dir=$(npm_app pm2_app) || return 1
  exporter=$(free_port)
  PM2_API_URL=http://127.0.0.1:$(free_port)
  pm2=(env -C "$dir" PM2_HOME="$dir/home" PM2_DISABLE_VERSION_CHECK=true "$dir/node_modules/.bin/pm2")
  STOPS+=("${pm2[*]} kill")
  "${pm2[@]}" set pm2-metrics:host 127.0.0.1 >>"$WORK/logs/pm2.log" 2>&1 || return 1
  "${pm2[@]}" set pm2-metrics:port "$exporter" >>"$WORK/logs/pm2.log" 2>&1 || return 1
  CORPUS_API_PORT=${PM2_API_URL##*:} "${pm2[@]}" start ecosystem.config.js >>"$WORK/logs/pm2.log" 2>&1 || return 1
  scrape_exporter pm2 "$exporter" pm2:9209 || return 1
  traffic_pm2
}

# Orders listed, a slow report (two at once), a failing route and a missing page on the API.
traffic_pm2() {
  local url=$PM2_API_URL i slow
  for i in 1 2 3 4 5 6 7 8; do curl -fsS -o /dev/null "$url/orders" || true; done
  curl -sS -o /dev/null "$url/report" &
  slow=$!
  curl -sS -o /dev/null "$url/report" || true
  wait "$slow" || true
  curl -sS -o /dev/null "$url/fail" || true
  curl -sS -o /dev/null "$url/nowhere" || true
}

# A BMC (baseboard management controller) played by OpenIPMI's simulator, ipmi_sim, on a free 127.0.0.1 port (IPMI
# over LAN, UDP): its LAN channel, an admin user for the exporter and a console for emulation commands (lan.conf), the
# BMC with a system event log (SEL) of 1000 entries, and the sensors of ipmi_sensor below (bmc.emu), with their sensor
# data records compiled by sdrcomp into the simulator's persistent state. Threshold sensors read their raw value from a
# file under sensors/ (traffic changes them); discrete ones are set through the console. Debian's
# prometheus-ipmi-exporter serves its own /metrics and, for /ipmi?target=...&module=corpus, runs FreeIPMI's
# ipmimonitoring, bmc-info, ipmi-chassis, ipmi-dcmi and ipmi-sel against the BMC (IPMI 2.0; the simulator needs
# FreeIPMI's opensesspriv workaround; it has no DCMI), with FreeIPMI's SDR cache and the exporter's temporary files
# under the work directory.
start_ipmi() {
  local dir=$WORK/ipmi exporter
  IPMI_DIR=$dir
  IPMI_PORT=$(free_port)
  IPMI_CONSOLE=$(free_port)
  exporter=$(free_port)
  mkdir -p "$dir/state/ipmi_sim/corpus" "$dir/sensors" "$dir/sdr-cache"
  cat >"$dir/lan.conf" <<EOF
name "corpus"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 $IPMI_PORT
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  user 2 true "exporter" "corpus-secret" admin 10 none md2 md5 straight
  startcmd "sleep 86400"
  startnow true
console 127.0.0.1 $IPMI_CONSOLE
EOF
  cat >"$dir/bmc.emu" <<'EOF'
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
# The watchdog sensor, sensor 0.
sensor_add 0x20 0 0 35 0x6f event-only
EOF
  : >"$dir/bmc.sdrs"
  ipmi_sensors
  echo "mc_enable 0x20" >>"$dir/bmc.emu"
  sdrcomp -8 -o "$dir/state/ipmi_sim/corpus/sdr.20.main" "$dir/bmc.sdrs" >>"$WORK/logs/ipmi_sim.log" 2>&1 || return 1
  spawn ipmi_sim ipmi_sim -n -c "$dir/lan.conf" -f "$dir/bmc.emu" -s "$dir/state"
  wait_for 30 ipmi_console "" || return 1
  cat >"$dir/ipmi.yml" <<EOF
modules:
  corpus:
    user: exporter
    pass: corpus-secret
    driver: LAN_2_0
    privilege: admin
    timeout: 10000
    workaround_flags: [opensesspriv]
    collectors: [bmc, ipmi, chassis, dcmi, sel]
    custom_args:
      ipmi: [--sdr-cache-directory, "$dir/sdr-cache"]
EOF
  spawn ipmi-exporter env TMPDIR="$dir" prometheus-ipmi-exporter --config.file="$dir/ipmi.yml" \
    --web.listen-address="127.0.0.1:$exporter"
  scrape_exporter ipmi "$exporter" ipmi:9290 || return 1
  wait_for 60 http_ok "http://127.0.0.1:$exporter/ipmi?module=corpus&target=127.0.0.1:$IPMI_PORT" || return 1
}

# One emulation command (none: only connect) on the simulator's console, reading up to its next prompt each time (the
# simulator dies of SIGPIPE when it writes to a console already closed).
ipmi_console() {
  python3 - "$IPMI_CONSOLE" "$1" <<'EOF'
import socket, sys

def prompt(console):
    seen = b""
    while not seen.endswith(b"> "):
        data = console.recv(4096)
        if not data:
            sys.exit("console closed")
        seen += data
    return seen

with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as console:
    prompt(console)
    if sys.argv[2]:
        console.sendall(sys.argv[2].encode() + b"\n")
        print(prompt(console).decode(errors="replace"))
EOF
}

# A threshold sensor: its full sensor data record (sdrcomp's language) and its emulation commands. Arguments: number,
# sensor type (1 temperature, 2 voltage, 3 current, 4 fan, 11 other units), entity, entity instance, unit, m and the
# result exponent (value = m x raw x 10^exponent), name, the raw reading, then the thresholds' raw values (lower
# non-recoverable, critical, non-critical, upper non-critical, critical, non-recoverable; - for none) and optional
# extra SDR fields.
ipmi_threshold_sensor() {
  local num=$1 type=$2 entity=$3 instance=$4 unit=$5 m=$6 rexp=$7 name=$8 raw=$9 dir=$IPMI_DIR
  shift 9
  local names=(lnr lc lnc unc uc unr) values=("$1" "$2" "$3" "$4" "$5" "$6") enabled="" i
  shift 6
  {
    printf 'sdr type 1\n  sensor_owner_id 0x20\n  channel_number 0\n  sensor_owner_lun 0\n  sensor_number %s\n' "$num"
    printf '  entity_id %s\n  entity_instance %s\n' "$entity" "$instance"
    printf '  init_scanning true\n  init_events true\n  init_thresholds true\n  init_sensor_type true\n'
    printf '  default_event_gen_on true\n  default_sensor_scan_on true\n  sensor_auto_rearm true\n'
    printf '  sensor_threshold_access readable\n  sensor_event_msg_ctrl per_state\n'
    printf '  sensor_type %s\n  event_reading_type_code 1\n  analog_data_format unsigned\n  base_unit %s\n' "$type" "$unit"
    printf '  m %s\n  r_exp %s\n' "$m" "$rexp"
    for i in 0 1 2 3 4 5; do
      [ "${values[$i]}" = - ] && continue
      printf '  %s_thrsh_readable true\n  %s_thresh %s\n' "${names[$i]}" "${names[$i]}" "${values[$i]}"
    done
    for i in "$@"; do printf '  %s\n' "$i"; done
    printf '  id_string "%s"\nendsdr\n\n' "$name"
  } >>"$dir/bmc.sdrs"
  # The simulator's order: upper non-recoverable, critical, non-critical, lower non-recoverable, critical, non-critical.
  local ordered=()
  for i in 5 4 3 0 1 2; do
    if [ "${values[$i]}" = - ]; then enabled+=0 ordered+=(0); else enabled+=1 ordered+=("${values[$i]}"); fi
  done
  echo "$raw" >"$dir/sensors/$num"
  cat >>"$dir/bmc.emu" <<EOF
sensor_add 0x20 0 $num $type 0x01 poll 1000 file "$dir/sensors/$num"
sensor_set_threshold 0x20 0 $num readable $enabled ${ordered[*]}
sensor_set_event_support 0x20 0 $num enable scanning per-state 000101010010101 000101010010101 000101010010101 000101010010101
EOF
}

# A discrete sensor with sensor-specific states (event/reading type 0x6f): its compact sensor data record and its
# emulation commands. Arguments: number, sensor type, entity, entity instance, name, the states it can assert (bit
# mask, 15 characters, bit 0 rightmost) and the state bit set at start (- for none).
ipmi_discrete_sensor() {
  local num=$1 type=$2 entity=$3 instance=$4 name=$5 states=$6 initial=$7 dir=$IPMI_DIR i
  {
    printf 'sdr type 2\n  sensor_owner_id 0x20\n  channel_number 0\n  sensor_owner_lun 0\n  sensor_number %s\n' "$num"
    printf '  entity_id %s\n  entity_instance %s\n' "$entity" "$instance"
    printf '  init_scanning true\n  init_events true\n  init_sensor_type true\n'
    printf '  default_event_gen_on true\n  default_sensor_scan_on true\n  sensor_auto_rearm true\n'
    printf '  sensor_event_msg_ctrl per_state\n  sensor_type %s\n  event_reading_type_code 0x6f\n' "$type"
    for i in $(seq 0 14); do
      [ "${states:$((14 - i)):1}" = 1 ] && printf '  assert_event%s true\n  deassert_event%s true\n' "$i" "$i"
    done
    printf '  id_string "%s"\nendsdr\n\n' "$name"
  } >>"$dir/bmc.sdrs"
  {
    echo "sensor_add 0x20 0 $num $type 0x6f"
    echo "sensor_set_event_support 0x20 0 $num enable scanning per-state $states $states $states $states"
    [ "$initial" = - ] || echo "sensor_set_bit_clr_rest 0x20 0 $num $initial 1 0"
  } >>"$dir/bmc.emu"
}

# The BMC's sensors: a two-socket server's temperatures, fans (in RPM, one as a duty cycle in percent), voltages,
# the power supplies' current, power and status, the chassis intrusion switch and the drive bays.
ipmi_sensors() {
  #                     num type entity                 inst unit       m  rexp name           raw lnr lc  lnc unc uc  unr
  ipmi_threshold_sensor 1   1    processor              1    degrees_C  1  0    "CPU1 Temp"    48  -   -   -   85  95  105
  ipmi_threshold_sensor 2   1    processor              2    degrees_C  1  0    "CPU2 Temp"    51  -   -   -   85  95  105
  ipmi_threshold_sensor 3   1    system_board           1    degrees_C  1  0    "Inlet Temp"   23  -   3   8   38  42  -
  ipmi_threshold_sensor 4   1    system_board           2    degrees_C  1  0    "Exhaust Temp" 39  -   3   8   70  75  -
  ipmi_threshold_sensor 5   1    memory_device          1    degrees_C  1  0    "DIMM Temp"    41  -   -   -   80  85  -
  ipmi_threshold_sensor 6   4    fan_cooling_device     1    RPM        60 0    "Fan1"         96  -   10  20  -   -   -
  ipmi_threshold_sensor 7   4    fan_cooling_device     2    RPM        60 0    "Fan2"         94  -   10  20  -   -   -
  ipmi_threshold_sensor 8   4    fan_cooling_device     3    RPM        60 0    "Fan3"         98  -   10  20  -   -   -
  ipmi_threshold_sensor 9   4    fan_cooling_device     4    unspecified 1 0    "Fan4 Duty"    35  -   -   -   -   -   -   "percentage true"
  ipmi_threshold_sensor 10  2    system_board           1    Volts      6  -2   "12V"          200 -   170 180 220 230 -
  ipmi_threshold_sensor 11  2    system_board           1    Volts      3  -2   "5V"           167 -   150 158 175 183 -
  ipmi_threshold_sensor 12  2    system_board           1    Volts      2  -2   "3.3V"         165 -   148 157 173 181 -
  ipmi_threshold_sensor 13  2    processor              1    Volts      1  -2   "CPU1 Vcore"   92  -   70  75  120 130 -
  ipmi_threshold_sensor 14  2    system_board           1    Volts      2  -2   "VBAT"         150 -   120 135 -   -   -
  ipmi_threshold_sensor 15  3    power_supply           1    Amps       1  -1   "PSU1 Current" 18  -   -   -   100 120 -
  ipmi_threshold_sensor 16  3    power_supply           2    Amps       1  -1   "PSU2 Current" 17  -   -   -   100 120 -
  ipmi_threshold_sensor 17  11   power_supply           1    Watts      4  0    "PSU1 Power"   54  -   -   -   150 175 -
  ipmi_threshold_sensor 18  11   power_supply           2    Watts      4  0    "PSU2 Power"   52  -   -   -   150 175 -
  ipmi_threshold_sensor 19  11   system_board           1    Watts      4  0    "System Power" 106 -   -   -   200 225 -
  #                    num type entity              inst name              states (bit 0 rightmost) initial
  ipmi_discrete_sensor 20  5    system_chassis      1    "Intrusion"       000000000000001          -
  ipmi_discrete_sensor 21  8    power_supply        1    "PSU1 Status"     000000000001111          0
  ipmi_discrete_sensor 22  8    power_supply        2    "PSU2 Status"     000000000001111          0
  ipmi_discrete_sensor 23  13   disk_or_disk_bay    1    "Drive 0"         000000000000011          0
  ipmi_discrete_sensor 24  13   disk_or_disk_bay    2    "Drive 1"         000000000000011          0
}

# The server warms up under load: CPU1 above its upper non-critical threshold, the fans faster, then Fan3 fails (below
# its lower critical threshold) and PSU2 reports a failure (its current and power drop to nothing, PSU1 takes the
# load); someone opens the chassis cover; Drive 1 reports a fault. The simulator logs the threshold crossings and
# state changes in its SEL.
traffic_ipmi() {
  local dir=$IPMI_DIR
  echo 97 >"$dir/sensors/1"
  echo 67 >"$dir/sensors/2"
  echo 72 >"$dir/sensors/4"
  echo 120 >"$dir/sensors/6"
  echo 118 >"$dir/sensors/7"
  echo 7 >"$dir/sensors/8"
  echo 62 >"$dir/sensors/9"
  echo 0 >"$dir/sensors/16"
  echo 0 >"$dir/sensors/18"
  echo 41 >"$dir/sensors/15"
  echo 118 >"$dir/sensors/17"
  {
    ipmi_console "sensor_set_bit 0x20 0 22 1 1 1"
    ipmi_console "sensor_set_bit 0x20 0 20 0 1 1"
    ipmi_console "sensor_set_bit 0x20 0 24 1 1 1"
  } >>"$WORK/logs/ipmi-console.log" 2>&1 || true
}

# Prometheus's job for ipmi: the probe of the BMC and the exporter's own metrics (see prometheus_config).
prometheus_job_ipmi() {
  cat <<EOF
  - job_name: ipmi
    static_configs:
      - targets: ["${TARGET[ipmi]}"]
        labels: {__metrics_path__: /ipmi, __param_module: corpus, __param_target: "127.0.0.1:$IPMI_PORT", instance: "bmc:623"}
      - targets: ["${TARGET[ipmi]}"]
        labels: {instance: "${INSTANCE[ipmi]}"}
EOF
}

# A one-node high-availability cluster: Corosync (knet on 127.0.0.1, no crypto, votequorum) and Pacemaker's daemons
# (pacemakerd), both in a mount namespace of their own where the work directory is bind-mounted over
# /var/lib/corosync and /var/lib/pacemaker, so the cluster's state (the CIB, the scheduler's inputs) stays there;
# fencing off (stonith-enabled=false), three resources from the Dummy resource agents, each monitored every 10 s:
# web-ip and app running, database failing to start on this node (the agent's fail_start_on). Debian's
# prometheus-hacluster-exporter runs crm_mon, cibadmin, corosync-cfgtool and corosync-quorumtool (no SBD, no DRBD).
start_hacluster() {
  local dir=$WORK/hacluster exporter node
  exporter=$(free_port)
  node=$(uname -n)
  mkdir -p "$dir/corosync" "$dir/pacemaker/cib" "$dir/pacemaker/pengine" "$dir/pacemaker/blackbox" "$dir/pacemaker/cores"
  chown -R hacluster:haclient "$dir/pacemaker"
  chmod 750 "$dir/pacemaker"/*
  cat >"$dir/corosync.conf" <<EOF
totem {
  version: 2
  cluster_name: corpus
  transport: knet
  crypto_cipher: none
  crypto_hash: none
}
nodelist {
  node {
    ring0_addr: 127.0.0.1
    name: $node
    nodeid: 1
  }
}
quorum {
  provider: corosync_votequorum
}
logging {
  to_stderr: yes
  to_logfile: no
  to_syslog: no
  blackbox: off
}
EOF
  spawn hacluster unshare --mount --propagation private sh -c '
    mount --bind "$1/corosync" /var/lib/corosync && mount --bind "$1/pacemaker" /var/lib/pacemaker || exit 1
    corosync -f -c "$1/corosync.conf" &
    sleep 3
    PCMK_logfile="$1/pacemaker.log" exec pacemakerd' hacluster "$dir"
  wait_for 90 sh -c "crm_mon -1 2>/dev/null | grep -q 'Online: \[ $node \]'" || return 1
  crm_attribute --type crm_config --name stonith-enabled --update false || return 1
  cibadmin --create -o resources --xml-text '<primitive id="web-ip" class="ocf" provider="pacemaker" type="Dummy">
    <operations><op id="web-ip-monitor" name="monitor" interval="10s"/></operations></primitive>' || return 1
  cibadmin --create -o resources --xml-text "<primitive id=\"database\" class=\"ocf\" provider=\"pacemaker\" type=\"Dummy\">
    <instance_attributes id=\"database-attributes\"><nvpair id=\"database-fail-start-on\" name=\"fail_start_on\" value=\"$node\"/></instance_attributes>
    <operations><op id=\"database-monitor\" name=\"monitor\" interval=\"10s\"/></operations></primitive>" || return 1
  cibadmin --create -o resources --xml-text '<primitive id="app" class="ocf" provider="heartbeat" type="Dummy">
    <operations><op id="app-monitor" name="monitor" interval="10s"/></operations></primitive>' || return 1
  spawn hacluster-exporter ha_cluster_exporter --web.listen-address="127.0.0.1:$exporter"
  scrape_exporter hacluster "$exporter" hacluster:9664
}

# The app resource dies behind the cluster's back (the Dummy agent's state file removed: its monitor finds it stopped
# and Pacemaker recovers it), a node attribute is set, and web-ip is banned from the node (a location constraint;
# with one node it stops).
traffic_hacluster() {
  rm -f /run/resource-agents/Dummy-app.state
  crm_attribute --node "$(uname -n)" --name rack --update r42 >/dev/null 2>&1 || true
  crm_resource --resource web-ip --ban --node "$(uname -n)" >/dev/null 2>&1 || true
}

FLOWER_PIP=(flower==2.2.0 "celery[redis]==5.5.3" kombu==5.5.4 redis==5.2.1 tornado==6.6.1 prometheus-client==0.26.0)

# Flower, Celery's monitoring web application (PyPI), with its own /metrics, watching the workers of celery_app.py
# (celery_workers: two, on a Redis of their own) through the task events; it turns the workers' events on itself.
start_flower() {
  local venv port
  venv=$(python_venv flower "${FLOWER_PIP[@]}") || return 1
  redis_app flower || return 1
  FLOWER_ENV=("${APP_ENV[@]}")
  port=$(free_port)
  celery_workers flower "$venv" || return 1
  spawn flower "${FLOWER_ENV[@]}" "$venv/bin/celery" -A celery_app flower --address=127.0.0.1 --port="$port"
  scrape_exporter flower "$port" flower:5555 60 || return 1
  FLOWER_VENV=$venv
  traffic_flower
}

# celery_app.py's tasks, some of them failing and retried (celery_tasks), while Flower watches.
traffic_flower() {
  celery_tasks "${FLOWER_ENV[@]}" "$FLOWER_VENV/bin/python" >>"$WORK/logs/flower-client.log" 2>&1 || true
}

ENERU_PIP=(eneru==6.2.2 PyYAML==6.0.4 ruamel.yaml==0.19.1)

# NUT's data server, upsd, on a free 127.0.0.1 port (its configuration and state under the work directory, run as the
# nut user in the foreground) with three UPSes played by the dummy-ups driver from the .dev files that nut_ups writes:
# rack-a on line, rack-b on battery, closet on line and charging. Eneru (PyPI) polls the three through upsc every
# second and serves /metrics on its API; it runs with --dry-run, its local shutdown off (command `true`) and no UPS
# marked as powering this host, so nothing is ever shut down.
start_nut() {
  local dir=$WORK/nut venv port api ups
  venv=$(python_venv nut "${ENERU_PIP[@]}") || return 1
  port=$(free_port)
  api=$(free_port)
  mkdir -p "$dir/state" "$dir/eneru"
  echo "LISTEN 127.0.0.1 $port" >"$dir/upsd.conf"
  : >"$dir/upsd.users"
  cat >"$dir/ups.conf" <<EOF
[rack-a]
  driver = dummy-ups
  port = rack-a.dev
  desc = "Rack A: web servers"
[rack-b]
  driver = dummy-ups
  port = rack-b.dev
  desc = "Rack B: storage"
[closet]
  driver = dummy-ups
  port = closet.dev
  desc = "Network closet"
EOF
  nut_ups rack-a "Eaton" "5PX 1500" "OL" 100 2460 37 231.2 "No test initiated" >"$dir/rack-a.dev"
  nut_ups rack-b "APC" "SMT1000" "OB DISCHRG" 80 1500 58 0 "Done and passed" >"$dir/rack-b.dev"
  nut_ups closet "CyberPower" "CP900EPFCLCD" "OL CHRG" 93 3100 12 229.4 "Done and passed" >"$dir/closet.dev"
  chown -R nut:nut "$dir"
  NUT_ENV=(env NUT_CONFPATH="$dir" NUT_STATEPATH="$dir/state")
  NUT_DIR=$dir
  for ups in rack-a rack-b closet; do spawn "nut-$ups" "${NUT_ENV[@]}" /lib/nut/dummy-ups -a "$ups" -F -u nut; done
  NUT_CLOSET_DRIVER=${PIDS[-1]}
  spawn nut-upsd "${NUT_ENV[@]}" /lib/nut/upsd -F -u nut
  for ups in rack-a rack-b closet; do
    wait_for 30 sh -c "upsc $ups@127.0.0.1:$port ups.status | grep -q '^O'" || return 1
  done
  cat >"$dir/eneru/config.yaml" <<EOF
ups:
  - {name: "rack-a@127.0.0.1:$port", display_name: "Rack A", is_local: false}
  - {name: "rack-b@127.0.0.1:$port", display_name: "Rack B", is_local: false}
  - name: "closet@127.0.0.1:$port"
    display_name: "Network closet"
    is_local: false
    connection_loss_grace_period: {enabled: false}
behavior: {dry_run: true}
local_shutdown: {enabled: false, command: "true"}
logging:
  file: $dir/eneru/eneru.log
  state_file: $dir/eneru/state
  battery_history_file: $dir/eneru/battery-history
  shutdown_flag_file: $dir/eneru/shutdown-scheduled
statistics: {db_directory: $dir/eneru/stats}
api: {enabled: true, bind: 127.0.0.1, port: $api}
energy: {cost_per_kwh: 0.25, currency: EUR}
EOF
  spawn nut-eneru env -C "$dir/eneru" "$venv/bin/eneru" run -c "$dir/eneru/config.yaml" --dry-run
  scrape_exporter nut "$api" nut:9191
}

# A .dev file of dummy-ups: UPS $1 made by $2, model $3, with status $4, battery charge $5 %, runtime $6 s, load $7 %,
# input voltage $8 V (230 V nominal, 50 Hz) and the result of its last self-test $9.
nut_ups() {
  cat <<EOF
device.mfr: $2
device.model: $3
device.serial: CORPUS-$1
device.type: ups
ups.mfr: $2
ups.model: $3
ups.status: $4
ups.load: $7
ups.realpower: $(($7 * 12))
ups.realpower.nominal: 1200
ups.temperature: 29.5
ups.test.result: $9
battery.charge: $5
battery.charge.low: 20
battery.runtime: $6
battery.runtime.low: 300
battery.voltage: 54.6
battery.voltage.nominal: 48
input.voltage: $8
input.voltage.nominal: 230
input.frequency: 50.0
input.transfer.low: 196
input.transfer.high: 264
output.voltage: 230.0
output.frequency: 50.0
EOF
}

# The mains voltage at rack A rises above the warning band (the UPS trims it), rack B's battery drains on (its
# runtime stays above Eneru's shutdown thresholds; dummy-ups reads a .dev file again when it changes) and the closet
# UPS's driver dies, so upsd has no data for it and Eneru's connection to it fails.
traffic_nut() {
  kill -TERM -- "-$NUT_CLOSET_DRIVER" 2>/dev/null || true
  nut_ups rack-a "Eaton" "5PX 1500" "OL TRIM" 100 2460 41 256.4 "Done and warning" >"$NUT_DIR/rack-a.dev.tmp"
  nut_ups rack-b "APC" "SMT1000" "OB DISCHRG" 77 1380 58 0 "Done and passed" >"$NUT_DIR/rack-b.dev.tmp"
  chown nut:nut "$NUT_DIR"/*.dev.tmp
  mv "$NUT_DIR/rack-a.dev.tmp" "$NUT_DIR/rack-a.dev"
  mv "$NUT_DIR/rack-b.dev.tmp" "$NUT_DIR/rack-b.dev"
}

QBITTORRENT_PIP=(prometheus-qbittorrent-exporter==1.7.0 qbittorrent-api==2026.10.1 prometheus-client==0.26.0
  python-json-logger==4.2.0 requests==2.34.2)

# A .torrent file ($3) for the file or directory $2 (pieces of 256 KiB), announced to the tracker URL $1.
make_torrent() {
  python3 - "$@" <<'EOF'
import hashlib, os, sys

tracker, path, out = sys.argv[1:4]


def bencode(value):
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(map(bencode, value)) + b"e"
    return b"d" + b"".join(bencode(key) + bencode(value[key]) for key in sorted(value)) + b"e"


files = [path] if os.path.isfile(path) else sorted(os.path.join(path, name) for name in os.listdir(path))
data = b"".join(open(name, "rb").read() for name in files)
size = 256 * 1024
info = {"name": os.path.basename(path), "piece length": size,
        "pieces": b"".join(hashlib.sha1(data[at:at + size]).digest() for at in range(0, len(data), size))}
if os.path.isfile(path):
    info["length"] = len(data)
else:
    info["files"] = [{"length": os.path.getsize(name), "path": [os.path.basename(name)]} for name in files]
open(out, "wb").write(bencode({"announce": tracker, "info": info}))
EOF
}

# A qBittorrent (Debian's qbittorrent-nox) with its profile in $WORK/qbittorrent/$1, its Web UI on port $2 (no login
# from 127.0.0.1) and BitTorrent on port $3 of 127.0.0.1, without DHT, local peer discovery, PeX or UPnP. Bound to
# 127.0.0.1 (unbound, libtorrent connects to 127.0.0.1 from the machine's other address) and with more than one
# connection from an address allowed (without it, two qBittorrents on 127.0.0.1 never connect).
qbittorrent_instance() {
  local name=$1 webui=$2 listen=$3 dir=$WORK/qbittorrent/$1
  mkdir -p "$dir/qBittorrent/config" "$dir/downloads"
  cat >"$dir/qBittorrent/config/qBittorrent.conf" <<'EOF'
[LegalNotice]
Accepted=true

[Preferences]
WebUI\Address=127.0.0.1
WebUI\LocalHostAuth=false
EOF
  spawn "qbittorrent-$name" qbittorrent-nox --profile="$dir" --webui-port="$webui" --torrenting-port="$listen"
  wait_for 60 http_ok "http://127.0.0.1:$webui/api/v2/app/version" || return 1
  curl -fsS "http://127.0.0.1:$webui/api/v2/app/setPreferences" --data-urlencode "json={\"dht\": false,
    \"lsd\": false, \"pex\": false, \"upnp\": false, \"save_path\": \"$dir/downloads\", \"listen_port\": $listen,
    \"current_interface_address\": \"127.0.0.1\", \"enable_multi_connections_from_same_ip\": true}" >/dev/null
}

# qbt <webui port> <API method> [curl arguments]: a call to a qBittorrent's Web API.
qbt() {
  local webui=$1 method=$2
  shift 2
  curl -fsS "http://127.0.0.1:$webui/api/v2/$method" "$@"
}

# Two qBittorrents on 127.0.0.1 share torrents made here (random data): "main", the one the exporter reads, seeds a
# folder of holiday photos and downloads a Debian image (at 400 KB/s) from "peer", whose embedded tracker both
# announce to; main also has an image no one seeds (stalled) and a paused backup, in categories (linux-isos,
# photos, backups) and with tags (public, family, archive). martabal's qbittorrent-exporter (PyPI's
# prometheus-qbittorrent-exporter) reads main's Web API, with its per-torrent and per-tag metrics on.
start_qbittorrent() {
  local dir=$WORK/qbittorrent venv tracker exporter announce
  venv=$(python_venv qbittorrent "${QBITTORRENT_PIP[@]}") || return 1
  QBITTORRENT_WEBUI=$(free_port)
  QBITTORRENT_PEER=$(free_port)
  tracker=$(free_port)
  exporter=$(free_port)
  qbittorrent_instance main "$QBITTORRENT_WEBUI" "$(free_port)" || return 1
  qbittorrent_instance peer "$QBITTORRENT_PEER" "$(free_port)" || return 1
  qbt "$QBITTORRENT_PEER" app/setPreferences --data-urlencode \
    "json={\"enable_embedded_tracker\": true, \"embedded_tracker_port\": $tracker}" || return 1
  announce=http://127.0.0.1:$tracker/announce
  mkdir -p "$dir/main/downloads/holiday-photos" "$dir/torrents" "$dir/nowhere"
  for photo in IMG_0001 IMG_0002 IMG_0003; do
    head -c 3M /dev/urandom >"$dir/main/downloads/holiday-photos/$photo.jpg"
  done
  head -c 24M /dev/urandom >"$dir/peer/downloads/debian-12.5.0-amd64-netinst.iso"
  head -c 2M /dev/urandom >"$dir/nowhere/ubuntu-mate-24.04-desktop-amd64.iso"
  head -c 2M /dev/urandom >"$dir/nowhere/backup-2026-11.tar"
  make_torrent "$announce" "$dir/main/downloads/holiday-photos" "$dir/torrents/photos.torrent" &&
    make_torrent "$announce" "$dir/peer/downloads/debian-12.5.0-amd64-netinst.iso" "$dir/torrents/debian.torrent" &&
    make_torrent "$announce" "$dir/nowhere/ubuntu-mate-24.04-desktop-amd64.iso" "$dir/torrents/ubuntu.torrent" &&
    make_torrent "$announce" "$dir/nowhere/backup-2026-11.tar" "$dir/torrents/backup.torrent" || return 1
  rm -rf "$dir/nowhere"
  for category in linux-isos photos backups; do
    qbt "$QBITTORRENT_WEBUI" torrents/createCategory -d "category=$category" || return 1
  done
  qbt "$QBITTORRENT_WEBUI" torrents/createTags -d "tags=public,family,archive" || return 1
  qbt "$QBITTORRENT_PEER" torrents/add -F "torrents=@$dir/torrents/debian.torrent" >/dev/null || return 1
  qbt "$QBITTORRENT_PEER" torrents/add -F "torrents=@$dir/torrents/photos.torrent" >/dev/null || return 1
  qbt "$QBITTORRENT_WEBUI" torrents/add -F "torrents=@$dir/torrents/photos.torrent" -F category=photos \
    -F tags=family -F upLimit=300000 >/dev/null || return 1
  qbt "$QBITTORRENT_WEBUI" torrents/add -F "torrents=@$dir/torrents/debian.torrent" -F category=linux-isos \
    -F tags=public -F dlLimit=400000 >/dev/null || return 1
  qbt "$QBITTORRENT_WEBUI" torrents/add -F "torrents=@$dir/torrents/ubuntu.torrent" -F category=linux-isos \
    -F tags=public >/dev/null || return 1
  qbt "$QBITTORRENT_WEBUI" torrents/add -F "torrents=@$dir/torrents/backup.torrent" -F category=backups \
    -F tags=archive -F paused=true >/dev/null || return 1
  spawn qbittorrent-exporter env QBITTORRENT_HOST=127.0.0.1 QBITTORRENT_PORT="$QBITTORRENT_WEBUI" \
    EXPORTER_ADDRESS=127.0.0.1 EXPORTER_PORT="$exporter" EXPORT_METRICS_BY_TORRENT=True EXPORT_METRICS_BY_TAG=True \
    "$venv/bin/qbittorrent-exporter"
  scrape_exporter qbittorrent "$exporter" qbittorrent:8000
}

# A magnet link whose metadata no one has: its torrent stays fetching metadata.
traffic_qbittorrent() {
  qbt "$QBITTORRENT_WEBUI" torrents/add -F "urls=magnet:?xt=urn:btih:$(printf 'corpus' | sha1sum | cut -c1-40)&dn=fedora-40-workstation.iso" \
    -F category=linux-isos >/dev/null 2>&1 || true
}

FASTAPI_PIP=(fastapi==0.165.0 starlette==1.10.0 pydantic==2.14.4 uvicorn==0.54.0
  prometheus-fastapi-instrumentator==8.1.0 prometheus-client==0.26.0)

# A small FastAPI service (fastapi_shop.py here: users and orders read, added and deleted, a slow report and a
# failing one) instrumented with prometheus-fastapi-instrumentator (its default metrics and the requests in
# progress) and served by uvicorn; its own /metrics.
start_fastapi() {
  local dir=$WORK/fastapi venv port
  venv=$(python_venv fastapi "${FASTAPI_PIP[@]}") || return 1
  port=$(free_port)
  mkdir -p "$dir"
  spawn fastapi env -C "$dir" PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$HERE" "$venv/bin/python" -m uvicorn \
    fastapi_shop:app --host 127.0.0.1 --port "$port"
  scrape_exporter fastapi "$port" fastapi:8000 60 || return 1
  FASTAPI_URL=http://127.0.0.1:$port
  traffic_fastapi
}

traffic_fastapi() { shop_api_traffic "$FASTAPI_URL"; }

# A one-node Ceph cluster (Debian's ceph 16): a monitor on a free 127.0.0.1 port (msgr2 only), a manager with its
# prometheus module on (and its per-image RBD statistics for the rbd pool), one BlueStore OSD on a 1 GiB file, cephx
# off, everything (configuration, data, admin sockets, logs) under $WORK/ceph. Pools of size 1 (their "no redundancy"
# warning off, as the monitor's free-space warning, which would say more about this machine's disk than about Ceph):
# data for RADOS objects and rbd with a 64 MiB image.
start_ceph() {
  local dir=$WORK/ceph mon exporter fsid uuid
  mon=$(free_port)
  exporter=$(free_port)
  fsid=$(cat /proc/sys/kernel/random/uuid)
  mkdir -p "$dir/mon.a" "$dir/mgr.x" "$dir/osd.0" "$dir/run" "$dir/log"
  cat >"$dir/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
run dir = $dir/run
admin socket = $dir/run/\$cluster-\$name.asok
log file = $dir/log/\$cluster-\$name.log
keyring = $dir/keyring
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
auth allow insecure global id reclaim = false
[mon]
mon data = $dir/\$name
[mgr]
mgr data = $dir/\$name
[osd]
osd data = $dir/\$name
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 1073741824
osd memory target = 1073741824
EOF
  CEPH=(ceph -c "$dir/ceph.conf")
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null || return 1
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon]" "$dir/monmap" >/dev/null || return 1
  ceph-mon -c "$dir/ceph.conf" --mkfs -i a --monmap "$dir/monmap" || return 1
  spawn ceph-mon ceph-mon -f -c "$dir/ceph.conf" -i a
  wait_for 60 "${CEPH[@]}" --connect-timeout 5 mon stat || return 1
  spawn ceph-mgr ceph-mgr -f -c "$dir/ceph.conf" -i x
  wait_for 60 sh -c "${CEPH[*]} mgr stat | grep -q '\"available\": true'" || return 1
  "${CEPH[@]}" config set mgr mgr/prometheus/server_addr 127.0.0.1 || return 1
  "${CEPH[@]}" config set mgr mgr/prometheus/server_port "$exporter" || return 1
  "${CEPH[@]}" config set mgr mgr/prometheus/rbd_stats_pools rbd || return 1
  "${CEPH[@]}" mgr module enable prometheus || return 1
  uuid=$(cat /proc/sys/kernel/random/uuid)
  [ "$("${CEPH[@]}" osd new "$uuid")" = 0 ] || return 1
  ceph-osd -c "$dir/ceph.conf" -i 0 --mkfs --osd-uuid "$uuid" >>"$WORK/logs/ceph-osd.log" 2>&1 || return 1
  spawn ceph-osd ceph-osd -f -c "$dir/ceph.conf" -i 0
  wait_for 90 sh -c "${CEPH[*]} osd stat | grep -q '1 up'" || return 1
  "${CEPH[@]}" osd pool create data 8 >/dev/null 2>&1 || return 1
  "${CEPH[@]}" osd pool create rbd 8 >/dev/null 2>&1 || return 1
  "${CEPH[@]}" osd pool application enable data rados >/dev/null 2>&1 || return 1
  rbd -c "$dir/ceph.conf" pool init rbd || return 1
  rbd -c "$dir/ceph.conf" create --size 64M rbd/disk1 || return 1
  scrape_exporter ceph "$exporter" ceph:9283 90
}

# A RADOS object written and read (and a missing one asked for), a write and a read benchmark on the data pool,
# writes to the RBD image, a scrub, and the noout flag set (a health warning).
traffic_ceph() {
  local dir=$WORK/ceph
  head -c 4M /dev/urandom >"$dir/object"
  rados -c "$dir/ceph.conf" -p data put report-1 "$dir/object" >/dev/null 2>&1 || true
  rados -c "$dir/ceph.conf" -p data get report-1 "$dir/object.read" >/dev/null 2>&1 || true
  rados -c "$dir/ceph.conf" -p data get missing "$dir/object.read" >/dev/null 2>&1 || true
  rados -c "$dir/ceph.conf" -p data bench 4 write -b 65536 -t 4 --no-cleanup >/dev/null 2>&1 || true
  rados -c "$dir/ceph.conf" -p data bench 2 seq -t 4 >/dev/null 2>&1 || true
  rbd -c "$dir/ceph.conf" bench --io-type write --io-size 4K --io-total 4M rbd/disk1 >/dev/null 2>&1 || true
  "${CEPH[@]}" pg scrub 1.0 >/dev/null 2>&1 || true
  "${CEPH[@]}" osd set noout >/dev/null 2>&1 || true
}

# A small Fastify service (fastify_app/ here: the routes of express_app/) instrumented with fastify-metrics (its
# route duration histogram and summary by method, route and status code, and prom-client's default metrics), all on
# its own /metrics; versions pinned by fastify_app/package-lock.json.
start_fastify() { node_shop fastify; }

traffic_fastify() { shop_api_traffic "${SHOP_URL[fastify]}"; }

RAY_PIP=("ray[default]==2.60.0" prometheus_client==0.26.0)

# A one-node Ray cluster (PyPI's ray with its dashboard and metrics agent): `ray start --head --block` on 127.0.0.1
# (the node's address is the loopback: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), every port free and chosen here, two CPUs
# and a 200 MB object store, its temporary directory under the work directory; Prometheus scrapes the metrics export
# port, where the head node's agent serves the metrics of the GCS, the raylet, the workers and the node.
start_ray() {
  local dir=$WORK/ray venv metrics
  venv=$(python_venv ray "${RAY_PIP[@]}") || return 1
  mkdir -p "$dir/tmp"
  RAY_ADDRESS=127.0.0.1:$(free_port)
  metrics=$(free_port)
  RAY_ENV=(env -C "$dir" PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$HERE" RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
    RAY_USAGE_STATS_ENABLED=0)
  spawn ray "${RAY_ENV[@]}" "$venv/bin/ray" start --head --block --node-ip-address=127.0.0.1 \
    --port="${RAY_ADDRESS#*:}" --metrics-export-port="$metrics" --dashboard-host=127.0.0.1 \
    --dashboard-port="$(free_port)" --ray-client-server-port="$(free_port)" \
    --dashboard-agent-listen-port="$(free_port)" --dashboard-agent-grpc-port="$(free_port)" \
    --runtime-env-agent-port="$(free_port)" --num-cpus=2 \
    --object-store-memory=200000000 --temp-dir="$dir/tmp" --disable-usage-stats
  scrape_exporter ray "$metrics" ray:8080 120 || return 1
  # The agent answers before the GCS and the raylet have reported.
  wait_for 120 sh -c "curl -fsS http://127.0.0.1:$metrics/metrics | grep -q '^ray_node_cpu_count'" || return 1
  RAY_VENV=$venv
  traffic_ray
}

# A job of ray_app.py (quick, slow, failing and retried tasks, objects put and read, an actor and a killed one) in
# the background, its slow tasks running while Prometheus scrapes.
traffic_ray() {
  spawn ray-driver "${RAY_ENV[@]}" "$RAY_VENV/bin/python" -m ray_app "$RAY_ADDRESS" "$SCRAPE_SECONDS"
}

# Service $1's app directory $1_app/ here (npm_app), in NODE_APP, and a Redis of its own there (Debian's
# redis-server) on a free port without persistence, in NODE_REDIS.
node_redis_app() {
  NODE_APP=$(npm_app "$1_app") || return 1
  NODE_REDIS=$(free_port)
  spawn "$1-redis" redis-server --port "$NODE_REDIS" --bind 127.0.0.1 --save '' --appendonly no --dir "$NODE_APP"
  wait_for 30 redis-cli -p "$NODE_REDIS" ping
}

# A user's own BullMQ service (bullmq_app/ here: a producer and workers of the queues emails, payments and images, a
# paused queue of reports and a flow; versions pinned by bullmq_app/package-lock.json) on Debian's redis-server on a
# free port without persistence. Two targets: the service's own /metrics (each queue's
# Queue.exportPrometheusMetrics and prom-client's default metrics) and BullMQ's OpenTelemetry metrics (bullmq-otel
# with enableMetrics) on OpenTelemetry's Prometheus exporter.
start_bullmq() {
  local port otel
  node_redis_app bullmq || return 1
  port=$(free_port)
  otel=$(free_port)
  spawn bullmq env -C "$NODE_APP" node app.js "$NODE_REDIS" "$port" "$otel"
  scrape_exporter bullmq "$port" bullmq:3000 || return 1
  wait_for 30 http_ok "http://127.0.0.1:$otel/metrics" || return 1
  BULLMQ_URL=http://127.0.0.1:$port
  BULLMQ_OTEL=127.0.0.1:$otel
  traffic_bullmq
}

# Prometheus's job for bullmq: the service's /metrics and the OpenTelemetry exporter, each with its own instance label.
prometheus_job_bullmq() {
  cat <<EOF
  - job_name: bullmq
    static_configs:
      - targets: ["${TARGET[bullmq]}"]
        labels: {instance: "${INSTANCE[bullmq]}"}
      - targets: ["$BULLMQ_OTEL"]
        labels: {instance: "bullmq-otel:9464"}
EOF
}

# A round of jobs (app.js's POST /traffic): welcome e-mails, two bounces retried (one after a back-off) and an
# invalid address that fails both attempts, card payments of which a third are declined, slow image resizes (one
# prioritized), a newsletter delayed by hours, a report in the paused queue and an order confirmation waiting for
# its images.
traffic_bullmq() { curl -fsS -o /dev/null -X POST "$BULLMQ_URL/traffic"; }

# Two Moleculer nodes of a user's own microservices (moleculer_app/ here, versions pinned by its package-lock.json) on
# a Redis transporter (Debian's redis-server on a free port without persistence): `gateway` (moleculer-web's API
# gateway on a free port) and `worker` (the services orders, payments, inventory and notifications), each serving
# Moleculer's own metrics with its Prometheus reporter on 127.0.0.1; one job, two targets.
start_moleculer() {
  local gateway worker
  node_redis_app moleculer || return 1
  worker=$(free_port)
  gateway=$(free_port)
  MOLECULER_API=$(free_port)
  spawn moleculer-worker env -C "$NODE_APP" node app.js worker "$NODE_REDIS" "$worker"
  spawn moleculer-gateway env -C "$NODE_APP" node app.js gateway "$NODE_REDIS" "$gateway" "$MOLECULER_API"
  scrape_exporter moleculer "$gateway" moleculer-gateway:3030 || return 1
  wait_for 30 http_ok "http://127.0.0.1:$worker/metrics" || return 1
  # The gateway answers once it has discovered the worker's actions over the transporter.
  wait_for 30 http_ok "http://127.0.0.1:$MOLECULER_API/api/orders" || return 1
  MOLECULER_WORKER=127.0.0.1:$worker
  traffic_moleculer
}

# Prometheus's job for moleculer: the gateway's and the worker's reporters, each with its own instance label.
prometheus_job_moleculer() {
  cat <<EOF
  - job_name: moleculer
    static_configs:
      - targets: ["${TARGET[moleculer]}"]
        labels: {instance: "${INSTANCE[moleculer]}"}
      - targets: ["$MOLECULER_WORKER"]
        labels: {instance: "moleculer-worker:3030"}
EOF
}

# Through the gateway: orders listed (cached), read (one missing, 404), stock looked up (cached), orders placed (one
# without an item, 422; one whose confirmation event fails), card charges (some fail once and are retried, declined
# ones fail, 402), a missing page, and a report slower than the request timeout (retried, in the background).
traffic_moleculer() {
  local url=http://127.0.0.1:$MOLECULER_API/api i card
  curl -sS -o /dev/null "$url/report" &
  for i in 1 2 3; do
    curl -fsS -o /dev/null "$url/orders" || true
    curl -fsS -o /dev/null "$url/orders/1" || true
    curl -sS -o /dev/null "$url/orders/99" || true
    curl -fsS -o /dev/null "$url/stock/pear" || true
  done
  for i in apple pear bomb; do
    curl -fsS -o /dev/null -H 'Content-Type: application/json' -d "{\"item\": \"$i\", \"quantity\": 2}" "$url/orders" || true
  done
  curl -sS -o /dev/null -H 'Content-Type: application/json' -d '{"quantity": 3}' "$url/orders" || true
  for card in visa visa declined visa visa declined; do
    curl -sS -o /dev/null -H 'Content-Type: application/json' -d "{\"card\": \"$card\", \"amount\": 5}" "$url/pay" || true
  done
  curl -sS -o /dev/null "$url/nowhere" || true
}

# A small GraphQL API on GraphQL Yoga (graphql_app/ here: books and authors, a deprecated field, a slow report, a
# failing resolver, a mutation and a subscription) with GraphQL Yoga's Prometheus plugin (all its metrics, the
# per-resolver histogram too) and prom-client's default metrics, its own /metrics; versions pinned by
# graphql_app/package-lock.json.
start_graphql() { node_shop graphql; }

# GraphQL operation $2 (a JSON body) posted to the API at $1.
graphql_post() { curl -sS -o /dev/null -H 'Content-Type: application/json' -d "$2" "$1/graphql" || true; }

# Named and anonymous queries (one selecting the deprecated field), a mutation that fails and one that adds a book
# (published to a subscriber that listens over server-sent events meanwhile), a query whose resolver throws, one that
# fails validation and one that fails to parse, and the slow report.
traffic_graphql() {
  local url=${SHOP_URL[graphql]} i
  timeout 8 curl -sS -N -o /dev/null -H 'Accept: text/event-stream' \
    "$url/graphql?query=subscription%20NewBooks%7BbookAdded%7Btitle%7D%7D" &
  for i in 1 2 3; do
    graphql_post "$url" '{"query": "query Shelf { books { title author { name } } }", "operationName": "Shelf"}'
    graphql_post "$url" '{"query": "{ authors { name books { title } } }"}'
  done
  graphql_post "$url" '{"query": "query Book { book(id: \"1\") { title isbn } }", "operationName": "Book"}'
  graphql_post "$url" '{"query": "query Picks { recommendations { title } }", "operationName": "Picks"}'
  graphql_post "$url" '{"query": "{ books { nope } }"}'
  graphql_post "$url" '{"query": "{ books { "}'
  graphql_post "$url" '{"query": "mutation AddBook { addBook(title: \"Ubik\", authorId: \"9\") { id } }", "operationName": "AddBook"}'
  graphql_post "$url" '{"query": "mutation AddBook { addBook(title: \"Ubik\", authorId: \"2\") { id } }", "operationName": "AddBook"}'
  graphql_post "$url" '{"query": "query Report { report { books } }", "operationName": "Report"}'
}

JUPYTER_SERVER_PIP=(jupyter_server==2.21.1 jupyter_server_terminals==0.5.4 terminado==0.18.1 ipykernel==7.4.0
  jupyter_client==8.10.0 pyzmq==27.3.0 tornado==6.6.1 prometheus_client==0.26.0)

# jupyter_server (PyPI) run on its own, `jupyter server` with a token and its own /metrics (without authentication),
# ipykernel's python3 kernel and jupyter_server_terminals' terminals; Jupyter's directories under the work directory.
start_jupyter_server() {
  local dir=$WORK/jupyter_server venv port
  venv=$(python_venv jupyter_server "${JUPYTER_SERVER_PIP[@]}") || return 1
  port=$(free_port)
  mkdir -p "$dir/notebooks"
  JUPYTER_SERVER_ENV=(env -C "$dir/notebooks" HOME="$dir" JUPYTER_RUNTIME_DIR="$dir/runtime"
    JUPYTER_DATA_DIR="$dir/data" JUPYTER_CONFIG_DIR="$dir/config" PATH="$venv/bin:$PATH")
  spawn jupyter_server "${JUPYTER_SERVER_ENV[@]}" "$venv/bin/jupyter" server --no-browser --ip=127.0.0.1 \
    --port="$port" --IdentityProvider.token=corpus-token-0123456789abcdef --ServerApp.authenticate_prometheus=False \
    --ServerApp.allow_root=True
  scrape_exporter jupyter_server "$port" jupyter_server:8888 60 || return 1
  JUPYTER_SERVER_URL=http://127.0.0.1:$port
  traffic_jupyter_server
}

# Kernels started (two python3 kernels, one restarted and one shut down, one of a kind that does not exist),
# terminals opened and one closed, the contents API (a notebook and a file made, read, renamed, listed, a missing
# one, a copy into a folder that does not exist, one deleted), sessions, a request with a wrong token and one to a
# page that does not exist.
traffic_jupyter_server() {
  python3 - "$JUPYTER_SERVER_URL" >>"$WORK/logs/jupyter_server-client.log" 2>&1 <<'EOF' || true
import json, sys, time, urllib.error, urllib.request, uuid

base = sys.argv[1]
token = {"Authorization": "token corpus-token-0123456789abcdef", "Content-Type": "application/json"}
run = uuid.uuid4().hex[:6]

def call(method, path, body=None, headers=token):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            print(method, path, answer.status)
            text = answer.read()
            return json.loads(text) if text else {}
    except urllib.error.HTTPError as error:
        print(method, path, error.code)
        return {}

call("GET", "/api/status")
call("GET", "/api/kernelspecs")
kernels = [call("POST", "/api/kernels", {"name": "python3"}) for _ in range(2)]
call("POST", "/api/kernels", {"name": "julia-1.9"})
time.sleep(3)
call("GET", "/api/kernels")
if kernels[0]:
    call("POST", f"/api/kernels/{kernels[0]['id']}/restart")
    call("POST", f"/api/kernels/{kernels[0]['id']}/interrupt")
if kernels[1]:
    call("DELETE", f"/api/kernels/{kernels[1]['id']}")
call("DELETE", f"/api/kernels/{uuid.uuid4()}")
terminals = [call("POST", "/api/terminals") for _ in range(2)]
call("GET", "/api/terminals")
if terminals[1]:
    call("DELETE", f"/api/terminals/{terminals[1]['name']}")
notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
call("PUT", f"/api/contents/report-{run}.ipynb", {"type": "notebook", "content": notebook})
call("PUT", f"/api/contents/notes-{run}.txt", {"type": "file", "format": "text", "content": "hello\n"})
call("POST", "/api/contents", {"type": "directory"})
for _ in range(3):
    call("GET", "/api/contents")
    call("GET", f"/api/contents/report-{run}.ipynb")
call("PATCH", f"/api/contents/notes-{run}.txt", {"path": f"notes-{run}-old.txt"})
call("GET", "/api/contents/missing.ipynb")
call("POST", "/api/contents/no-such-folder", {"copy_from": f"report-{run}.ipynb"})
call("DELETE", f"/api/contents/notes-{run}-old.txt")
call("POST", "/api/sessions", {"path": f"report-{run}.ipynb", "type": "notebook", "kernel": {"name": "python3"}})
call("GET", "/api/sessions")
call("GET", "/api/contents", headers={"Authorization": "token wrong"})
call("GET", "/api/no-such-endpoint")
EOF
}

# StayRTR (Debian's stayrtr), an RPKI-to-Router (RTR) server: it reads a JSON file of validated ROA payloads (VRPs:
# 40 IPv4 and 20 IPv6 prefixes with their origin AS, made up here from documentation addresses and private AS
# numbers) from a local web server (python3 -m http.server), re-reading it every 5 seconds, and serves them to
# routers over RTR on 127.0.0.1; its metrics port is scraped. rtrmon (same package) compares two VRP sources, here
# StayRTR's RTR feed (primary) and a second JSON file that lacks five of those VRPs and has one more (secondary),
# and serves its own metrics: one job, two targets.
start_stayrtr() {
  local dir=$WORK/stayrtr
  mkdir -p "$dir/www"
  python3 - "$dir/www" <<'EOF'
import json, sys, time

now = int(time.time())
roas = [{"prefix": f"198.51.{i}.0/24", "maxLength": 24, "asn": f"AS6449{i % 10}", "ta": ("ripe", "arin", "apnic")[i % 3],
         "expires": now + 86400} for i in range(40)]
roas += [{"prefix": f"2001:db8:{i:x}::/48", "maxLength": 48, "asn": f"AS6550{i % 10}", "ta": "ripe", "expires": now + 86400}
         for i in range(20)]
meta = {"generated": now, "buildtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
json.dump({"metadata": meta, "roas": roas}, open(f"{sys.argv[1]}/vrps.json", "w"))
other = roas[5:] + [{"prefix": "203.0.113.0/24", "maxLength": 24, "asn": "AS64511", "ta": "arin", "expires": now + 86400}]
json.dump({"metadata": meta, "roas": other}, open(f"{sys.argv[1]}/secondary.json", "w"))
EOF
  STAYRTR_WEB=$(free_port)
  STAYRTR_RTR=$(free_port)
  RTRMON_PORT=$(free_port)
  local port
  port=$(free_port)
  spawn stayrtr-web python3 -m http.server "$STAYRTR_WEB" --bind 127.0.0.1 --directory "$dir/www"
  wait_for 30 http_ok "http://127.0.0.1:$STAYRTR_WEB/vrps.json" || return 1
  spawn stayrtr stayrtr -bind "127.0.0.1:$STAYRTR_RTR" -metrics.addr "127.0.0.1:$port" \
    -cache "http://127.0.0.1:$STAYRTR_WEB/vrps.json" -refresh 5
  scrape_exporter stayrtr "$port" stayrtr:9847 || return 1
  spawn rtrmon rtrmon -addr "127.0.0.1:$RTRMON_PORT" -primary.host "tcp://127.0.0.1:$STAYRTR_RTR" \
    -secondary.host "http://127.0.0.1:$STAYRTR_WEB/secondary.json" -primary.refresh 5s -secondary.refresh 5s \
    -grace.period 0s -file "$dir/diff.json"
  wait_for 30 http_ok "http://127.0.0.1:$RTRMON_PORT/metrics" || return 1
  # A router that stays connected while Prometheus scrapes.
  spawn rtrdump-router rtrdump -connect "127.0.0.1:$STAYRTR_RTR" -refresh 5 -file "$dir/router.json"
}

prometheus_job_stayrtr() {
  cat <<EOF
  - job_name: stayrtr
    static_configs:
      - targets: ["${TARGET[stayrtr]}"]
        labels: {instance: "${INSTANCE[stayrtr]}"}
      - targets: ["127.0.0.1:$RTRMON_PORT"]
        labels: {instance: "rtrmon:9866"}
EOF
}

# Routers (rtrdump) ask for the full table (reset query, RTR versions 2, 1 and 0) and for the changes since a serial
# (serial query); the VRP file changes (two prefixes withdrawn, one added: a new serial, notifications to the
# connected router), then disappears for a while (the refresh gets 404) and comes back.
traffic_stayrtr() {
  local dir=$WORK/stayrtr version
  for version in 2 1 0; do
    timeout 5 rtrdump -connect "127.0.0.1:$STAYRTR_RTR" -rtr.version "$version" -file "$dir/dump-$version.json" >>"$WORK/logs/rtrdump.log" 2>&1 || true
  done
  timeout 5 rtrdump -connect "127.0.0.1:$STAYRTR_RTR" -serial -serial.value 0 -file "$dir/dump-serial.json" >>"$WORK/logs/rtrdump.log" 2>&1 || true
  python3 - "$dir/www/vrps.json" <<'EOF'
import json, sys

data = json.load(open(sys.argv[1]))
expires = data["roas"][0]["expires"]
data["roas"] = data["roas"][2:] + [{"prefix": "192.0.2.0/24", "maxLength": 24, "asn": "AS64500", "ta": "ripe", "expires": expires}]
json.dump(data, open(sys.argv[1], "w"))
EOF
  sleep 6
  mv "$dir/www/vrps.json" "$dir/www/vrps.json.away"
  sleep 6
  mv "$dir/www/vrps.json.away" "$dir/www/vrps.json"
  timeout 5 rtrdump -connect "127.0.0.1:$STAYRTR_RTR" -serial -serial.value 0 -file "$dir/dump-serial.json" >>"$WORK/logs/rtrdump.log" 2>&1 || true
}

# rtpengine (Debian's rtpengine-daemon), the media (RTP) relay that SIP proxies such as Kamailio drive: in the
# foreground, userspace only (no kernel forwarding table, --table=-1), relaying on 127.0.0.1 with 101 RTP ports,
# its NG control protocol on a free UDP port and its HTTP listener (whose /metrics is Prometheus') on another.
# Hung-up calls are closed at once (--delete-delay=0) and a call without media for 3 seconds times out.
start_rtpengine() {
  local dir=$WORK/rtpengine port base
  mkdir -p "$dir"
  port=$(free_port)
  RTPENGINE_NG=$(free_port)
  base=$((30000 + RANDOM % 20000))
  printf '[rtpengine]\n' >"$dir/rtpengine.conf"
  spawn rtpengine rtpengine --config-file="$dir/rtpengine.conf" --foreground --log-stderr --table=-1 \
    --interface=127.0.0.1 --listen-ng="127.0.0.1:$RTPENGINE_NG" --listen-http="127.0.0.1:$port" \
    --port-min="$base" --port-max="$((base + 100))" --delete-delay=0 --timeout=3 --pidfile="$dir/rtpengine.pid"
  scrape_exporter rtpengine "$port" rtpengine:2225 || return 1
}

# Calls set up, with audio relayed, and hung up through the NG protocol, one left to time out, and failing
# requests (rtpengine_calls.py here).
traffic_rtpengine() {
  python3 "$HERE/rtpengine_calls.py" "$RTPENGINE_NG" >>"$WORK/logs/rtpengine-calls.log" 2>&1 || true
}
GRPC_PIP=(grpcio==1.85.3 py-grpc-prometheus==0.8.0 prometheus_client==0.26.0)

# A user's own gRPC services (grpc_app.py here): shop.Catalog and shop.Pricing, two grpcio servers in one process
# with py-grpc-prometheus's server interceptor (handling-time histogram on), Catalog a client of Pricing and of an
# Inventory that is not running through its client interceptor (every histogram on); the process's metrics on a free
# port (prometheus_client's default registry).
start_grpc() {
  local venv metrics
  venv=$(python_venv grpc "${GRPC_PIP[@]}") || return 1
  metrics=$(free_port)
  GRPC_CATALOG=$(free_port)
  GRPC_ENV=(env -C "$HERE" PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m grpc_app)
  spawn grpc "${GRPC_ENV[@]}" serve "$metrics" "$GRPC_CATALOG" "$(free_port)" "$(free_port)"
  scrape_exporter grpc "$metrics" grpc:9090 || return 1
  traffic_grpc
}

# grpc_app.py's plain client: items got (and a missing one, one without a name), checkouts (slow, out of stock, a
# crash, the inventory unavailable, one past its deadline), streamed lists, imports (one rejected), a chat and a
# method that does not exist.
traffic_grpc() { "${GRPC_ENV[@]}" traffic "$GRPC_CATALOG" >>"$WORK/logs/grpc-client.log" 2>&1 || true; }

PREFECT_PIP=(prefect==3.9.1 prometheus_client==0.26.0 fastapi==0.150.0 uvicorn==0.54.0 SQLAlchemy==2.1.9
  aiosqlite==0.22.1 websockets==16.1.1 httpx==0.28.1 pydantic==2.14.4)

# Prefect's server (PyPI's prefect, `prefect server start`) on SQLite under the work directory, its /api/metrics on
# (PREFECT_API_ENABLE_METRICS), its logs published and streamed out to websocket subscribers; two process workers of
# a work pool `shop` (one is stopped in traffic_prefect), and prefect_app.py, a user's own process that runs flows
# against the server and serves Prefect's client metrics (PREFECT_CLIENT_METRICS_ENABLED). One job, two targets.
start_prefect() {
  local dir=$WORK/prefect venv port worker
  venv=$(python_venv prefect "${PREFECT_PIP[@]}") || return 1
  port=$(free_port)
  PREFECT_CLIENT=$(free_port)
  mkdir -p "$dir"
  PREFECT_ENV=(env -C "$dir" HOME="$dir" PREFECT_HOME="$dir/.prefect" PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$HERE"
    PREFECT_API_URL="http://127.0.0.1:$port/api" PREFECT_SERVER_ANALYTICS_ENABLED=false
    PREFECT_SERVER_UI_ENABLED=false)
  spawn prefect "${PREFECT_ENV[@]}" PREFECT_API_ENABLE_METRICS=true PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED=true \
    PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED=true "$venv/bin/prefect" server start --host 127.0.0.1 --port "$port"
  scrape_exporter prefect "$port" prefect:4200 120 /api/metrics || return 1
  wait_for 60 "${PREFECT_ENV[@]}" "$venv/bin/prefect" work-pool create shop --type process || return 1
  for worker in 1 2; do
    spawn "prefect-worker$worker" "${PREFECT_ENV[@]}" "$venv/bin/prefect" worker start --pool shop --type process \
      --name "shop-worker-$worker"
  done
  PREFECT_WORKER=${PIDS[-1]}
  # Both workers' channels open before one is stopped.
  wait_for 90 sh -c "curl -fsS http://127.0.0.1:$port/api/metrics | grep -q 'connections_total{event=\"opened\"} 2.0'" ||
    return 1
  spawn prefect-client "${PREFECT_ENV[@]}" PREFECT_CLIENT_METRICS_ENABLED=true \
    PREFECT_CLIENT_METRICS_PORT="$PREFECT_CLIENT" "$venv/bin/python" -m prefect_app "$((SCRAPE_SECONDS + 10))"
  wait_for 60 http_ok "http://127.0.0.1:$PREFECT_CLIENT/metrics" || return 1
}

# Prometheus's job for prefect: the server's /api/metrics and the flow-running process's client metrics.
prometheus_job_prefect() {
  cat <<EOF
  - job_name: prefect
    static_configs:
      - targets: ["${TARGET[prefect]}"]
        labels: {instance: "${INSTANCE[prefect]}"}
      - targets: ["127.0.0.1:$PREFECT_CLIENT"]
        labels: {instance: "prefect-client:4201", __metrics_path__: /metrics}
    metrics_path: /api/metrics
EOF
}

# One of the two workers is stopped (its worker channel closes); the client keeps running flows and emitting events.
traffic_prefect() { kill -TERM -- "-$PREFECT_WORKER" 2>/dev/null || true; }

# sshesame (Debian's sshesame), an SSH honeypot: it accepts SSH connections, lets clients in (here any password, no
# public key), fakes a shell and the forwarding of two TCP services (SMTP on 25, HTTP on 80), and logs what they do;
# its own metrics on a metrics address. Host keys are made at start in the work directory. One visitor stays
# logged in to the fake shell (a pseudo terminal) and one holds a remote port forwarding while Prometheus scrapes.
start_sshesame() {
  local dir=$WORK/sshesame port
  mkdir -p "$dir"
  SSHESAME_PORT=$(free_port)
  port=$(free_port)
  cat >"$dir/sshesame.yaml" <<EOF
server:
  listen_address: 127.0.0.1:$SSHESAME_PORT
  tcpip_services:
    25: SMTP
    80: HTTP
logging:
  metrics_address: 127.0.0.1:$port
auth:
  max_tries: 3
  password_auth:
    enabled: true
    accepted: true
  public_key_auth:
    enabled: true
    accepted: false
EOF
  printf '#!/bin/sh\necho hunter2\n' >"$dir/askpass"
  chmod +x "$dir/askpass"
  ssh-keygen -q -t ed25519 -N "" -f "$dir/visitor_key"
  spawn sshesame sshesame -config "$dir/sshesame.yaml" -data_dir "$dir/keys"
  scrape_exporter sshesame "$port" sshesame:2112 || return 1
  spawn sshesame-shell bash -c "sleep 600 | $(sshesame_ssh) -tt root@127.0.0.1"
  spawn sshesame-forward $(sshesame_ssh) -N -R 127.0.0.1:8080:127.0.0.1:22 admin@127.0.0.1
}

# OpenSSH's client for sshesame (a command line, to be split into words): no host key checks, the password from
# $WORK/sshesame/askpass, the public key $WORK/sshesame/visitor_key only when the options $@ say so (ssh takes an
# option's first value: they come first).
sshesame_ssh() {
  echo "env SSH_ASKPASS=$WORK/sshesame/askpass SSH_ASKPASS_REQUIRE=force ssh -F /dev/null $*" \
    "-o PubkeyAuthentication=no -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR" \
    "-p $SSHESAME_PORT"
}

# Visitors: one offers a public key (refused) before its password, others run commands, open a shell with a pseudo
# terminal and an environment variable, ask for the sftp subsystem, forward to the fake HTTP service and to a port
# that is no service, and one only opens a TCP connection and says something that is not SSH.
traffic_sshesame() {
  local dir=$WORK/sshesame ssh
  ssh=$(sshesame_ssh)
  {
    timeout 10 $(sshesame_ssh -o PubkeyAuthentication=yes -o IdentitiesOnly=yes -i "$dir/visitor_key") root@127.0.0.1 \
      'uname -a; id; cat /etc/passwd' </dev/null
    timeout 10 $ssh admin@127.0.0.1 'ls /' </dev/null
    printf 'whoami\nexit\n' | timeout 10 $ssh -tt -o SendEnv=LANG root@127.0.0.1
    timeout 10 $ssh -s root@127.0.0.1 sftp </dev/null
    printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 $ssh -W 127.0.0.1:80 root@127.0.0.1
    timeout 10 $ssh -W 127.0.0.1:3306 root@127.0.0.1 </dev/null
    timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$SSHESAME_PORT; echo hello >&3; exec 3>&-"
  } >>"$WORK/logs/sshesame-visitors.log" 2>&1 || true
}

MLSERVER_PIP=(mlserver==1.7.1 fastapi==0.115.14 starlette==0.46.2 starlette_exporter==0.24.0 uvicorn==0.54.0
  grpcio==1.85.3 py-grpc-prometheus==0.8.0 prometheus_client==0.26.0 numpy==2.4.6 pandas==3.1.1)

# Seldon's MLServer (PyPI's mlserver, `mlserver start`) serving a user's own two models (mlserver_app/ here, copied to
# the work directory, where MLServer writes its environments and metrics folders): its REST (V2 inference protocol)
# and gRPC servers and its own metrics server on free ports, the models run in the server's process
# (MLSERVER_PARALLEL_WORKERS=0: with parallel workers, their processes died at start here).
start_mlserver() {
  local dir=$WORK/mlserver venv metrics
  venv=$(python_venv mlserver "${MLSERVER_PIP[@]}") || return 1
  metrics=$(free_port)
  MLSERVER_HTTP=$(free_port)
  MLSERVER_GRPC=$(free_port)
  cp -r "$HERE/mlserver_app" "$dir"
  MLSERVER_ENV=(env -C "$dir" PYTHONDONTWRITEBYTECODE=1)
  spawn mlserver "${MLSERVER_ENV[@]}" MLSERVER_HOST=127.0.0.1 MLSERVER_HTTP_PORT="$MLSERVER_HTTP" \
    MLSERVER_GRPC_PORT="$MLSERVER_GRPC" MLSERVER_METRICS_PORT="$metrics" MLSERVER_PARALLEL_WORKERS=0 \
    "$venv/bin/mlserver" start .
  scrape_exporter mlserver "$metrics" mlserver:8082 120 || return 1
  wait_for 60 http_ok "http://127.0.0.1:$MLSERVER_HTTP/v2/models/fraud/ready" || return 1
  MLSERVER_VENV=$venv
  traffic_mlserver
}

# mlserver_app/traffic.py: inference over REST and gRPC (OK, a slow batch, failing inputs, a model that does not
# exist, a malformed request) and the health, metadata and repository endpoints.
traffic_mlserver() {
  "${MLSERVER_ENV[@]}" "$MLSERVER_VENV/bin/python" traffic.py "$MLSERVER_HTTP" "$MLSERVER_GRPC" \
    >>"$WORK/logs/mlserver-client.log" 2>&1 || true
}

# --- Prometheus -----------------------------------------------------------------------------------------------------

prometheus_config() {
  local service
  cat <<EOF
global:
  scrape_interval: 5s
  scrape_timeout: 5s
scrape_configs:
EOF
  for service in "$@"; do
    # A service with more than one target, or URL parameters, writes its own job.
    if declare -F "prometheus_job_$service" >/dev/null; then
      "prometheus_job_$service"
      continue
    fi
    cat <<EOF
  - job_name: $service
    metrics_path: ${METRICS_PATH[$service]}
    static_configs:
      - targets: ["${TARGET[$service]}"]
    relabel_configs:
      - target_label: instance
        replacement: ${INSTANCE[$service]}
EOF
  done
}

save_metadata() {
  local url=$1 service=$2
  curl -fsS --get "$url/api/v1/targets/metadata" --data-urlencode "match_target={job=\"$service\"}" |
    python3 -c '
import json, re, sys

body = json.load(sys.stdin)
assert body["status"] == "success", body
leave_out = re.compile(sys.argv[1])
# By name, then by target (a job of several targets has one row per target and name).
data = sorted(
    (row for row in body["data"] if not leave_out.fullmatch(row["metric"])),
    key=lambda row: (row["metric"], row["target"]["instance"]),
)
if not data:
    sys.exit("no metadata")
json.dump({"status": "success", "data": data}, sys.stdout, indent=1, sort_keys=True)
print()
print(len(data), file=sys.stderr)
' "${LEAVE_OUT[$service]:-}" >"$HERE/$service.json.tmp" 2>"$WORK/count" || {
      log "$service: $(cat "$WORK/count")"
      rm -f "$HERE/$service.json.tmp"
      return 1
    }
  mv "$HERE/$service.json.tmp" "$HERE/$service.json"
  log "$service: $(cat "$WORK/count") metrics -> bench/corpora/$service.json"
}

# The service's series (its label names and values: what the raw asset reads with /api/v1/series), gzipped.
save_series() {
  local url=$1 service=$2
  curl -fsS --get "$url/api/v1/series" --data-urlencode "match[]={job=\"$service\",__name__!~\"${LEAVE_OUT[$service]:-}\"}" |
    gzip -n >"$HERE/$service.series.json.gz.tmp" || {
    rm -f "$HERE/$service.series.json.gz.tmp"
    return 1
  }
  mv "$HERE/$service.series.json.gz.tmp" "$HERE/$service.series.json.gz"
}

# Exporters show some metrics only after the event behind them: say which questions' metrics a re-made snapshot lost.
check_questions() {
  python3 - "$HERE" <<'EOF'
import json, pathlib, sys

here = pathlib.Path(sys.argv[1])
for line in (here / "questions.jsonl").read_text().splitlines():
    question = json.loads(line)
    snapshot = here / (question["namespace"].split(":", 1)[1] + ".json")
    names = {row["metric"] for row in json.loads(snapshot.read_text())["data"]} if snapshot.exists() else set()
    for metric in question["relevant"]:
        if metric not in names:
            print(f"corpora: WARNING {snapshot.name} lacks {metric}, relevant to {question['query']!r}", file=sys.stderr)
EOF
}

main() {
  local wanted=("$@") service started=() failed=()
  [ "${#wanted[@]}" -eq 0 ] && wanted=("${SERVICES[@]}")
  [ "$(id -u)" -eq 0 ] || { log "run as root (installs packages, starts daemons as their users)"; exit 1; }
  install_packages
  WORK=$(mktemp -d /tmp/corpora.XXXXXX)
  chmod 755 "$WORK"
  mkdir -p "$WORK/logs"
  trap stop_all EXIT
  log "work directory $WORK"
  # DNS forwarders and proxies need their upstreams: bind before pdns_recursor/dnsdist, apache before squid/varnish.
  local order=() dep
  for service in "${wanted[@]}"; do
    case $service in
      pdns_recursor | kresd) dep=(bind) ;;
      dnsdist) dep=(bind pdns_recursor) ;;
      squid | varnish | trafficserver) dep=(apache) ;;
      *) dep=() ;;
    esac
    for d in "${dep[@]}" "$service"; do [[ " ${order[*]} " == *" $d "* ]] || order+=("$d"); done
  done
  for service in "${order[@]}"; do
    log "starting $service"
    if "start_$service"; then
      started+=("$service")
    else
      failed+=("$service")
      log "$service did not start; see $WORK/logs (KEEP_WORK=1 keeps them)"
    fi
  done
  local port config=$WORK/prometheus.yml
  port=$(free_port)
  prometheus_config "${started[@]}" >"$config"
  spawn prometheus prometheus --config.file="$config" --storage.tsdb.path="$WORK/prometheus" \
    --web.listen-address="127.0.0.1:$port"
  wait_for 60 http_ok "http://127.0.0.1:$port/-/ready" || return 1
  sleep "$((SCRAPE_SECONDS / 2))"
  for service in "${started[@]}"; do
    if declare -F "traffic_$service" >/dev/null; then "traffic_$service"; fi
  done
  sleep "$((SCRAPE_SECONDS - SCRAPE_SECONDS / 2))"
  for service in "${started[@]}"; do
    [[ " ${wanted[*]} " == *" $service "* ]] || continue
    save_metadata "http://127.0.0.1:$port" "$service" || failed+=("$service")
    save_series "http://127.0.0.1:$port" "$service" || failed+=("$service")
  done
  check_questions
  if [ "${#failed[@]}" -gt 0 ]; then
    log "FAILED: ${failed[*]}"
    return 1
  fi
}

main "$@"
