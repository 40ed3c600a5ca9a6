#!/usr/bin/env bash
#! MS-MQQB transfer beside native transfer, in one run of `mqemu bench`: server A sends to a
#! transactional queue on B over mqemu's native protocol (mqemu://A?to=B) and to the same queue
#! on C over MSMQ's binary protocol (mqemu://A?to=C, where A's host map sends C to
#! mqqb://C:PORT+1, C's --mqqb listener); the bench's consumers take the messages from B and C.
#! Transactional sends and receives, 1 KiB, three rounds; the summary's ratio is native over
#! MS-MQQB (goal: MS-MQQB at least 80% of native, a ratio of at most 1.25).
#!
#! usage: benches/mqqb.sh [extra mqemu bench flags]
#! env: ROUNDS (3), COUNT (200000), SECS (15), PORT (18010).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; COUNT=${COUNT:-200000}; SECS=${SECS:-15}; PORT=${PORT:-18010}
MQQB_PORT=$((PORT + 1))
. benches/common.sh
bench_setup mqqb

printf 'name = "a"\nlisten = "127.0.0.2:%s"\ndata = "%s/a"\n[hosts]\n"127.0.0.4" = "mqqb://127.0.0.4:%s"\n' \
  "$PORT" "$WORK" "$MQQB_PORT" > "$WORK/a.toml"
printf 'name = "b"\nlisten = "127.0.0.3:%s"\ndata = "%s/b"\n' "$PORT" "$WORK" > "$WORK/b.toml"
printf 'name = "c"\nlisten = "127.0.0.4:%s"\nmqqb = "127.0.0.4:%s"\ndata = "%s/c"\n' \
  "$PORT" "$MQQB_PORT" "$WORK" > "$WORK/c.toml"
for name in a b c; do
  RUST_LOG=warn "$M" serve --config "$WORK/$name.toml" > "$WORK/$name.log" 2>&1 &
  PIDS+=($!)
done
for ip in 127.0.0.2 127.0.0.3 127.0.0.4; do wait_for_server "$ip:$PORT"; done

"$M" bench --target "mqemu://127.0.0.2:$PORT?to=127.0.0.3" --target "mqemu://127.0.0.2:$PORT?to=127.0.0.4" \
  --rounds "$ROUNDS" --mode transactional --size 1024 --count "$COUNT" --secs "$SECS" "$@"
