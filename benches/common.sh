#!/usr/bin/env bash
#! What the bench scripts share, sourced by them: a release build, a scratch directory removed on
#! exit with every server the script started (pids in PIDS) and its private RabbitMQ node.
#!
#! bench_setup NAME          builds, sets M (the binary), WORK (scratch), PIDS, and the exit trap
#! wait_for_server ADDR      waits (up to 10 s) until an mqemu server answers on ADDR
#! want_rabbit               true unless NO_RABBIT is set or RabbitMQ is not installed
#! start_rabbit [PLUGIN...]  starts a private RabbitMQ node on 127.0.0.1:5672 with those plugins

bench_setup() {
  cargo build --release --quiet
  M=$PWD/target/release/mqemu
  WORK=$(mktemp -d "/tmp/mqemu-$1-bench.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${RABBIT:-}" ]; then RABBIT_DIR=$WORK/rabbit bash ../shared/peers/rabbit_ctl.sh stop >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}

wait_for_server() {
  for _ in $(seq 1 100); do "$M" stats --server "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "no mqemu server answered on $1" >&2
  return 1
}

want_rabbit() {
  [ -z "${NO_RABBIT:-}" ] && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]
}

start_rabbit() {
  RABBIT=1
  mkdir -p "$WORK/rabbit"
  if [ $# -gt 0 ]; then echo "[$(IFS=,; echo "$*")]." > "$WORK/rabbit/enabled_plugins"; fi
  RABBIT_DIR=$WORK/rabbit bash ../shared/peers/rabbit_ctl.sh start >/dev/null
}
