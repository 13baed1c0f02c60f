#!/usr/bin/env bash
# Runs Envoy in a container and drains it on SIGTERM. Envoy itself quits at once on SIGTERM,
# cutting open streams; here SIGTERM instead fails /healthz (load balancers stop sending new
# requests), starts a graceful listener drain (HTTP/1.1 responses close their connection, HTTP/2
# gets GOAWAY), waits until no request is active or DRAIN_SECONDS pass, and 0.75 s more for
# the spans of the last calls (when it traces), and only then stops Envoy, which exits 0. Written next to envoy.yaml by `saxgw envoy-config`.
#   bash run-envoy.sh ADMIN_PORT DRAIN_SECONDS [DRAIN_DELAY] envoy -c /etc/envoy/envoy.yaml ...
# DRAIN_DELAY (seconds, default 1): Envoy serves, new connections too, at least this long after
# SIGTERM, however idle. Behind a Kubernetes Service the pod's deletion reaches kube-proxy on
# every node, and an Ingress's or cloud load balancer's backends, only some seconds after
# SIGTERM: they go on sending new connections meanwhile, which an Envoy already gone refuses.
# It is also the container's liveness probe (deploy/k8s), which exits 0 if Envoy's admin
# answers GET /ready within SECONDS (default 2), with any status: 503 says Envoy starts or
# drains, not that it is hung. A stopped Envoy accepts the connection and never answers, so
# a TCP probe would pass it.
#   bash run-envoy.sh alive ADMIN_PORT [SECONDS]
set -u
if [ "${1-}" = alive ]; then
  port=$2 seconds=${3-2}
  if exec 3<>"/dev/tcp/127.0.0.1/$port" &&
    printf 'GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3 &&
    IFS= read -r -t "$seconds" status <&3 && [[ $status == HTTP/1.1\ * ]]; then
    exit 0
  fi
  echo "Envoy's admin at 127.0.0.1:$port did not answer GET /ready within ${seconds}s" >&2
  exit 1
fi
admin_port=$1 drain_seconds=$2 drain_delay=1
shift 2
if [[ ${1-} =~ ^[0-9]+([.][0-9]+)?$ ]]; then drain_delay=$1; shift; fi

admin() {  # admin METHOD PATH: prints Envoy's admin reply body (loopback; bash's /dev/tcp)
  exec 3<>"/dev/tcp/127.0.0.1/$admin_port" || return 1
  printf '%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$1" "$2" >&3
  sed '1,/^\r$/d' <&3
  exec 3<&-
}

active_requests() {
  admin GET '/stats?filter=^http\.ingress_http\.downstream_rq_active$' |
    tr -d '\r' | sed -n 's/^http\.ingress_http\.downstream_rq_active: //p'
}

# UTC: Envoy's own log lines carry its local time, and the JSON format the deployments give
# it (gateway/launch/stack.py ENVOY_JSON_LOG) says Z, as its access log's START_TIME is.
TZ=UTC "$@" &
envoy_pid=$!

drain() {
  echo "run-envoy: SIGTERM; serving new connections for ${drain_delay}s, draining for up to ${drain_seconds}s" >&2
  admin POST /healthcheck/fail >/dev/null
  admin POST '/drain_listeners?graceful&inboundonly' >/dev/null
  local deadline=$((SECONDS + drain_seconds))
  # Serve new connections while load balancers learn of the stop (DRAIN_DELAY), and let the
  # requests in flight see the drain before counting them.
  sleep "$drain_delay"
  while ((SECONDS < deadline)); do
    [ "$(active_requests)" = 0 ] && break
    sleep 0.5
  done
  # Envoy sends its spans every 250 ms and drops those it holds when it exits: those of the
  # calls that ended last (since the previous count) went with it. Three flushes and their
  # exports (SPAN_FLUSH_WAIT in gateway/launch/stack.py); nothing to wait for without tracing.
  sleep 0.75
  echo "run-envoy: active requests: $(active_requests); stopping Envoy" >&2
  kill -TERM "$envoy_pid"
  drained=1
}
trap drain TERM INT

drained=
wait "$envoy_pid"; status=$?   # returns early when the trap runs
if [ -n "$drained" ]; then wait "$envoy_pid"; status=$?; fi
exit "$status"
