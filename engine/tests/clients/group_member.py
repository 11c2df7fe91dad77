"""A confluent-kafka group member in its own process, so a test can kill it outright.

argv: broker group topic. Prints "partition value" per message (flushed), auto-commits every
100 ms, and runs until killed.
"""
import sys

from confluent_kafka import Consumer

broker, group, topic = sys.argv[1:4]
consumer = Consumer({
    "bootstrap.servers": broker,
    "group.id": group,
    "auto.offset.reset": "earliest",
    "auto.commit.interval.ms": 100,
    "session.timeout.ms": 2000,
    "heartbeat.interval.ms": 200,
})
consumer.subscribe([topic])
while True:
    message = consumer.poll(0.1)
    if message is not None and message.error() is None:
        print(message.partition(), message.value().decode(), flush=True)
