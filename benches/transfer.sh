#!/usr/bin/env bash
#! Measures queue-manager transfer side by side with its anchors, in one run of `mqemu bench`:
#! the single-server durable pipeline (mqemu://A), transfer from server A to server B on this
#! machine (mqemu://A?to=B: sent to A, received from B), and, when RabbitMQ is installed, the same
#! flow through a RabbitMQ shovel between two queues (ack mode on-confirm).
#!
#! usage: benches/transfer.sh [extra mqemu bench flags, e.g. --window 400]
#! env: ROUNDS (3), COUNT (400000), SECS (15), PORT (18010), PROBES (5000, latency probes),
#! NO_RABBIT=1 to leave RabbitMQ out. Ends with the commit-to-visibility latency of both paths.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; COUNT=${COUNT:-400000}; SECS=${SECS:-15}; PORT=${PORT:-18010}
. benches/common.sh
bench_setup transfer

for s in a:127.0.0.2 b:127.0.0.3; do
  name=${s%%:*}; ip=${s#*:}
  printf 'name = "%s"\nlisten = "%s:%s"\ndata = "%s/%s"\n' "$name" "$ip" "$PORT" "$WORK" "$name" > "$WORK/$name.toml"
  RUST_LOG=warn "$M" serve --config "$WORK/$name.toml" > "$WORK/$name.log" 2>&1 &
  PIDS+=($!)
done
for ip in 127.0.0.2 127.0.0.3; do wait_for_server "$ip:$PORT"; done

TARGETS=(--target "mqemu://127.0.0.2:$PORT" --target "mqemu://127.0.0.2:$PORT?to=127.0.0.3")
if want_rabbit; then
  start_rabbit rabbitmq_shovel
  # The queues are the bench's own (it declares and purges them); the shovel moves the
  # producers' queue to the consumers', confirming each message before acknowledging it.
  (. ../shared/peers/rabbit_env.sh 2>/dev/null; RABBIT_DIR=$WORK/rabbit
   HOME=$WORK/rabbit RABBITMQ_NODENAME=rabbit@localhost /usr/lib/rabbitmq/bin/rabbitmqctl -q set_parameter shovel mqemu-bench \
    '{"src-protocol":"amqp091","src-uri":"amqp://","src-queue":".\\private$\\bench-tx.src","dest-protocol":"amqp091","dest-uri":"amqp://","dest-queue":".\\private$\\bench-tx","ack-mode":"on-confirm"}')
  TARGETS+=(--target 'amqp://guest:guest@127.0.0.1:5672/%2f?shovel')
fi
"$M" bench "${TARGETS[@]}" --rounds "$ROUNDS" --mode transactional --count "$COUNT" --secs "$SECS" "$@"
# Latency, message by message: commit, and commit until a waiting receiver has it.
"$M" bench --target "mqemu://127.0.0.2:$PORT" --target "mqemu://127.0.0.2:$PORT?to=127.0.0.3" \
  --visibility --count "${PROBES:-5000}" --rounds "$ROUNDS"
