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
. benches/common.sh
bench_setup pipeline

printf 'name = "bench"\nlisten = "127.0.0.2:%s"\ndata = "%s/data"\n' "$PORT" "$WORK" > "$WORK/bench.toml"
RUST_LOG=warn "$M" serve --config "$WORK/bench.toml" > "$WORK/serve.log" 2>&1 &
PIDS+=($!)
wait_for_server "127.0.0.2:$PORT"

TARGETS=(--target "mqemu://127.0.0.2:$PORT")
if want_rabbit; then
  start_rabbit
  TARGETS+=(--target 'amqp://guest:guest@127.0.0.1:5672/%2f')
fi
"$M" bench "${TARGETS[@]}" --rounds "$ROUNDS" --mode transactional --window 100 --size 1024 \
  --count "$COUNT" --secs "$SECS" "$@"
