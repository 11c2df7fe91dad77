"""kafka-python producing to a replicated topic while brokers are killed (argv: bootstrap,
topic, first number, count). acks=all and idempotent (kafka-python 3.x's default); prints
one line per acknowledged record, "partition offset value", and exits non-zero if any
record is not acknowledged. Run by engine/tests/cluster.rs.
"""
import sys

from kafka import KafkaProducer

bootstrap, topic, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
producer = KafkaProducer(
    bootstrap_servers=bootstrap,
    acks="all",
    linger_ms=5,
    delivery_timeout_ms=60000,
    request_timeout_ms=10000,
    retry_backoff_ms=100,
)
futures = []
for number in range(first, first + count):
    value = f"{topic} record {number}"
    futures.append((value, producer.send(topic, key=f"key-{number}".encode(), value=value.encode())))
producer.flush()
for value, future in futures:
    meta = future.get(timeout=60)
    print(f"{meta.partition} {meta.offset} {value}")
producer.close()
