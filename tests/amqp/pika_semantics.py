"""pika (Python's AMQP 0-9-1 client, which nobody here wrote) against mqemu's AMQP listener.

Run by tests/integration/amqp.rs with the listener's port; exits non-zero on the first
assertion that fails. Each block checks one thing AMQP users rely on, with MSMQ underneath.
"""

import sys

import pika

PORT = int(sys.argv[1])
USER, PASSWORD = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else ("guest", "guest")


def connect():
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=PORT,
        credentials=pika.PlainCredentials(USER, PASSWORD),
        heartbeat=30,
        blocked_connection_timeout=10,
        socket_timeout=10,
    )
    return pika.BlockingConnection(params)


conn = connect()
ch = conn.channel()

# Declare, publish with properties, get: what was sent comes back, with MSMQ's label.
ok = ch.queue_declare("pika-orders", durable=True)
assert ok.method.queue == "pika-orders", ok
ch.queue_purge("pika-orders")
props = pika.BasicProperties(
    delivery_mode=2,
    priority=5,
    headers={"Label": "first order", "AppSpecific": 7},
)
ch.basic_publish("", "pika-orders", b"order 1", props)
method, got_props, body = ch.basic_get("pika-orders")
assert body == b"order 1", body
assert got_props.headers["Label"] == "first order", got_props.headers
assert got_props.headers["AppSpecific"] == 7, got_props.headers
# MSMQ sends every message of a transactional queue at priority 0 (msmq-facts): so does this.
assert got_props.priority == 0, got_props.priority
assert got_props.delivery_mode == 2, got_props.delivery_mode
assert not method.redelivered
ch.basic_ack(method.delivery_tag)
assert ch.basic_get("pika-orders") == (None, None, None)

# A non-transactional queue keeps priorities, highest first.
ch.queue_declare("pika-express", arguments={"x-mqemu-transactional": False})
ch.basic_publish("", "pika-express", b"low", pika.BasicProperties(priority=1))
ch.basic_publish("", "pika-express", b"high", pika.BasicProperties(priority=6))
m, p, b = ch.basic_get("pika-express", auto_ack=True)
assert (b, p.priority) == (b"high", 6), (b, p.priority)
ch.queue_delete("pika-express")

# Reject with requeue: the message is back first in line, marked redelivered; without
# requeue it is gone.
for i in range(2):
    ch.basic_publish("", "pika-orders", b"m%d" % i)
m0, _, b0 = ch.basic_get("pika-orders")
assert b0 == b"m0", b0
ch.basic_reject(m0.delivery_tag, requeue=True)
again, _, b = ch.basic_get("pika-orders")
assert b == b"m0" and again.redelivered, (b, again)
ch.basic_nack(again.delivery_tag, requeue=False)
m1, _, b1 = ch.basic_get("pika-orders")
assert b1 == b"m1", b1
ch.basic_ack(m1.delivery_tag)

# A consumer with prefetch 1, acking each: the rest arrive in order.
for i in range(2, 6):
    ch.basic_publish("", "pika-orders", b"m%d" % i)
ch.basic_qos(prefetch_count=1)
seen = []
for method, _, body in ch.consume("pika-orders", inactivity_timeout=5):
    assert method is not None, "the consumer got nothing within 5 s: %r" % seen
    seen.append(body)
    ch.basic_ack(method.delivery_tag)
    if len(seen) == 4:
        break
ch.cancel()
assert seen == [b"m2", b"m3", b"m4", b"m5"], seen

# Unacknowledged deliveries return when their channel closes.
ch.basic_publish("", "pika-orders", b"held")
held_ch = conn.channel()
m, _, b = held_ch.basic_get("pika-orders")
assert b == b"held"
held_ch.close()
m, _, b = ch.basic_get("pika-orders")
assert b == b"held" and m.redelivered, (b, m)
ch.basic_ack(m.delivery_tag)

# Transactions: a rolled-back publish never arrives; a committed one does; a rolled-back ack
# leaves the message unacknowledged.
tx = conn.channel()
tx.tx_select()
tx.basic_publish("", "pika-orders", b"rolled back")
tx.tx_rollback()
assert ch.basic_get("pika-orders") == (None, None, None)
tx.basic_publish("", "pika-orders", b"committed")
tx.tx_commit()
m, _, b = tx.basic_get("pika-orders")
assert b == b"committed", b
tx.basic_ack(m.delivery_tag)
tx.tx_rollback()
tx.close()
m, _, b = ch.basic_get("pika-orders")
assert b == b"committed" and m.redelivered, (b, m)
ch.basic_ack(m.delivery_tag)

# Publisher confirms: every publish is confirmed.
confirmed = conn.channel()
confirmed.confirm_delivery()
for i in range(50):
    confirmed.basic_publish("", "pika-orders", b"c%d" % i)
assert ch.queue_declare("pika-orders", passive=True).method.message_count == 50
ch.queue_purge("pika-orders")

# Refusals close the channel with AMQP's reply code, and the connection serves on.
bad = conn.channel()
try:
    bad.basic_publish("no-such-exchange", "pika-orders", b"x")
    bad.basic_get("pika-orders")  # a round trip to hear the close
    raise AssertionError("a publish to an unknown exchange was taken")
except pika.exceptions.ChannelClosedByBroker as e:
    assert e.reply_code == 404, e
bad = conn.channel()
try:
    bad.queue_declare("no-such-queue", passive=True)
    raise AssertionError("a passive declare of a missing queue succeeded")
except pika.exceptions.ChannelClosedByBroker as e:
    assert e.reply_code == 404 and "QUEUE_NOT_FOUND" in e.reply_text, e
bad = conn.channel()
try:
    bad.basic_ack(999)
    bad.basic_get("pika-orders")
    raise AssertionError("an unknown delivery tag was acknowledged")
except pika.exceptions.ChannelClosedByBroker as e:
    assert e.reply_code == 406, e
assert ch.basic_get("pika-orders") == (None, None, None)

ch.queue_delete("pika-orders")
conn.close()
print("pika: all checks passed")
