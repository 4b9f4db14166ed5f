#!/usr/bin/python3
"""The baseline for scripts/bench-amqp.sh: the same work as `lifeboat-bench amqp`, with pika.

pika's BlockingConnection, the way its documentation shows it: confirm_delivery, then
basic_publish of persistent messages one at a time (each waits for its confirm), then
basic_qos(prefetch_count=100), basic_consume and one basic_ack per message.

Publishing with a confirm per message is slow (~1 500/s), so only --publish-messages of them are
timed; the rest of the --messages that the consume phase reads are published afterwards without
confirms (untimed), and the queue is checked to hold all of them before consuming starts.
Both phases are timed from the first message to the last settlement, as lifeboat-bench does.
Prints one JSON line.
"""
import argparse
import json
import time
import uuid

import pika


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5689/")
    parser.add_argument("--messages", type=int, default=20000, help="consumed (and published in all)")
    parser.add_argument("--publish-messages", type=int, default=5000, help="published with confirms, timed")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--prefetch", type=int, default=100)
    args = parser.parse_args()
    timed = min(args.publish_messages, args.messages)

    queue = "pika-bench-" + str(uuid.uuid4())
    body = bytes((i * 31 + 7) & 0xFF for i in range(args.size))
    properties = pika.BasicProperties(content_type="application/octet-stream", delivery_mode=2)
    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    try:
        channel.queue_declare(queue=queue, durable=True, arguments={"x-queue-type": "quorum"})

        # Publish with a confirm per message (basic_publish blocks until the broker confirms).
        channel.confirm_delivery()
        start = time.monotonic()
        for _ in range(timed):
            channel.basic_publish(exchange="", routing_key=queue, body=body, properties=properties, mandatory=True)
        publish_seconds = time.monotonic() - start

        # The rest, untimed, on a channel without confirms, which stays open until the queue has
        # them all: a quorum queue may drop unconfirmed publishes still pending when their channel closes.
        filler = connection.channel()
        for _ in range(args.messages - timed):
            filler.basic_publish(exchange="", routing_key=queue, body=body, properties=properties)
        deadline = time.monotonic() + 60
        while channel.queue_declare(queue=queue, passive=True).method.message_count < args.messages:
            if time.monotonic() > deadline:
                raise SystemExit("pika_baseline: the queue never held all %d messages" % args.messages)
            connection.sleep(0.05)
        filler.close()

        # Consume and ack one by one.
        state = {"count": 0, "start": None}

        def on_message(ch, method, _properties, _body):
            if state["start"] is None:
                state["start"] = time.monotonic()
            ch.basic_ack(delivery_tag=method.delivery_tag)
            state["count"] += 1
            if state["count"] == args.messages:
                ch.stop_consuming()

        channel.basic_qos(prefetch_count=args.prefetch)
        channel.basic_consume(queue=queue, on_message_callback=on_message)
        channel.start_consuming()  # returns after stop_consuming's basic.cancel round trip
        consume_seconds = time.monotonic() - state["start"]
        # Acked messages that the broker put back when the channel closed (rabbitmq-server#10327).
        channel.close()
        channel = connection.channel()
        requeued = channel.queue_declare(queue=queue, passive=True).method.message_count
    finally:
        connection.channel().queue_delete(queue=queue)
        connection.close()

    print(json.dumps({
        "client": "pika", "pika_version": pika.__version__, "messages": args.messages,
        "publish_messages": timed, "size": args.size, "prefetch": args.prefetch,
        "publish_seconds": round(publish_seconds, 3),
        "publish_msgs_per_s": round(timed / publish_seconds, 1),
        "consume_seconds": round(consume_seconds, 3),
        "consume_msgs_per_s": round(args.messages / consume_seconds, 1),
        "requeued_at_close": requeued,
    }))


if __name__ == "__main__":
    main()
