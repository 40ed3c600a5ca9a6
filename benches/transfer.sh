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
cargo build --release --quiet
M=$PWD/target/release/mqemu
WORK=$(mktemp -d /tmp/mqemu-transfer-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${RABBIT:-}" ]; then RABBIT_DIR=$WORK/rabbit bash ../shared/peers/rabbit_ctl.sh stop >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

for s in a:127.0.0.2 b:127.0.0.3; do
  name=${s%%:*}; ip=${s#*:}
  printf 'name = "%s"\nlisten = "%s:%s"\ndata = "%s/%s"\n' "$name" "$ip" "$PORT" "$WORK" "$name" > "$WORK/$name.toml"
  RUST_LOG=warn "$M" serve --config "$WORK/$name.toml" > "$WORK/$name.log" 2>&1 &
  PIDS+=($!)
done
for ip in 127.0.0.2 127.0.0.3; do
  for _ in $(seq 1 100); do "$M" stats --server "$ip:$PORT" >/dev/null 2>&1 && break; sleep 0.1; done
done

TARGETS=(--target "mqemu://127.0.0.2:$PORT" --target "mqemu://127.0.0.2:$PORT?to=127.0.0.3")
if [ -z "${NO_RABBIT:-}" ] && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
  RABBIT=1
  mkdir -p "$WORK/rabbit"
  echo '[rabbitmq_shovel].' > "$WORK/rabbit/enabled_plugins"
  RABBIT_DIR=$WORK/rabbit bash ../shared/peers/rabbit_ctl.sh start >/dev/null
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
