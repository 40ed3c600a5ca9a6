#!/usr/bin/env bash
#! The AMQP face beside RabbitMQ and beside mqemu's own protocol, in one run of `mqemu bench`:
#! the same generator and the same AMQP client (the generator's own pipelined one: persistent
#! publishes with publisher confirms, a consumer with prefetch and a manual ack per message)
#! against a private RabbitMQ node and against mqemu's AMQP listener, and mqemu's native protocol (single-message
#! transactional sends and receives) on the same server; 1 KiB, window 100, three rounds.
#! Every send and every removal is durable on all three. Prints each run, then the medians.
#!
#! usage: benches/amqp.sh [extra mqemu bench flags]
#! env: ROUNDS (3), COUNT (400000), SECS (15), PORT (18011), NO_RABBIT=1 to leave RabbitMQ out.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; COUNT=${COUNT:-400000}; SECS=${SECS:-15}; PORT=${PORT:-18011}
. benches/common.sh
bench_setup amqp

RUST_LOG=warn "$M" serve --data "$WORK/data" --listen "127.0.0.2:$PORT" --amqp "127.0.0.2:5672" \
  > "$WORK/serve.log" 2>&1 &
PIDS+=($!)
wait_for_server "127.0.0.2:$PORT"

TARGETS=(--target 'amqp://guest:guest@127.0.0.2:5672/%2f' --target "mqemu://127.0.0.2:$PORT")
if want_rabbit; then
  start_rabbit
  TARGETS+=(--target 'amqp://guest:guest@127.0.0.1:5672/%2f')
fi
"$M" bench "${TARGETS[@]}" --rounds "$ROUNDS" --mode transactional --window 100 --size 1024 \
  --count "$COUNT" --secs "$SECS" "$@"
