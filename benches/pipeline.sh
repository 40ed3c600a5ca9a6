#!/usr/bin/env bash
#! The durable pipeline side by side with RabbitMQ, in one run of `mqemu bench`: 1 KiB
#! transactional messages, one pipelined producer and one consumer, a durable `mqemu serve` and
#! a private RabbitMQ node (Debian's package) taken in turn, three rounds. Both sides make every
#! send and every removal durable: mqemu's consumer receives each message in a single-message
#! transaction (as a local application), RabbitMQ's acks each one manually, its producer waits
#! for publisher confirms. Prints each run's rate, latencies and backlog, then the medians.
#!
#! usage: benches/pipeline.sh [extra mqemu bench flags, e.g. --window 400 --size 64]
#! env: ROUNDS (3), COUNT (400000), SECS (15), PORT (18010), NO_RABBIT=1 to leave RabbitMQ out.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; COUNT=${COUNT:-400000}; SECS=${SECS:-15}; PORT=${PORT:-18010}
cargo build --release --quiet
M=$PWD/target/release/mqemu
WORK=$(mktemp -d /tmp/mqemu-pipeline-bench.XXXXXX)
PID=
cleanup() {
  [ -z "$PID" ] || kill "$PID" 2>/dev/null || true
  if [ -n "${RABBIT:-}" ]; then RABBIT_DIR=$WORK/rabbit bash ../shared/peers/rabbit_ctl.sh stop >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

printf 'name = "bench"\nlisten = "127.0.0.2:%s"\ndata = "%s/data"\n' "$PORT" "$WORK" > "$WORK/bench.toml"
RUST_LOG=warn "$M" serve --config "$WORK/bench.toml" > "$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do "$M" stats --server "127.0.0.2:$PORT" >/dev/null 2>&1 && break; sleep 0.1; done

TARGETS=(--target "mqemu://127.0.0.2:$PORT")
if [ -z "${NO_RABBIT:-}" ] && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
  RABBIT=1
  mkdir -p "$WORK/rabbit"
  RABBIT_DIR=$WORK/rabbit bash ../shared/peers/rabbit_ctl.sh start >/dev/null
  TARGETS+=(--target 'amqp://guest:guest@127.0.0.1:5672/%2f')
fi
"$M" bench "${TARGETS[@]}" --rounds "$ROUNDS" --mode transactional --window 100 --size 1024 \
  --count "$COUNT" --secs "$SECS" "$@"
