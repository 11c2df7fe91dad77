"""kafka-python and confluent-kafka against a running ringlog broker (argv[1]).

Each check asserts what came back, message by message; a failure raises and the script
exits non-zero. Run by engine/tests/external_clients.rs.
"""
import sys
import time

BROKER = sys.argv[1]


def kafka_python():
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=BROKER, client_id="kafka-python-admin")
    admin.create_topics([NewTopic("py-orders", num_partitions=3, replication_factor=1)])
    assert "py-orders" in admin.list_topics(), admin.list_topics()

    # kafka-python 3.x producers are idempotent by default (InitProducerId + sequences).
    producer = KafkaProducer(bootstrap_servers=BROKER, acks="all")
    futures = []
    for i in range(120):
        key = f"customer-{i % 6}".encode()
        futures.append((key, f"order {i}".encode(), producer.send("py-orders", key=key, value=f"order {i}".encode())))
    producer.flush()
    sent = {}
    for key, value, future in futures:
        meta = future.get(timeout=10)
        sent[(meta.partition, meta.offset)] = (key, value)

    consumer = KafkaConsumer(bootstrap_servers=BROKER, enable_auto_commit=False, consumer_timeout_ms=3000)
    partitions = [TopicPartition("py-orders", p) for p in range(3)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    received = {}
    for message in consumer:
        received[(message.partition, message.offset)] = (message.key, message.value)
        if len(received) == len(sent):
            break
    consumer.close()
    assert received == sent, f"kafka-python: {len(received)} of {len(sent)} back"
    key_partitions = {}
    for (partition, _), (key, _) in received.items():
        key_partitions.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in key_partitions.values()), key_partitions

    admin.delete_topics(["py-orders"])
    deadline = time.time() + 10
    while "py-orders" in admin.list_topics() and time.time() < deadline:
        time.sleep(0.1)
    assert "py-orders" not in admin.list_topics()
    admin.close()
    print("kafka-python ok")


def confluent():
    from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": BROKER})
    for future in admin.create_topics([NewTopic("ck-events", num_partitions=2, replication_factor=1)]).values():
        future.result(timeout=10)
    assert "ck-events" in admin.list_topics(timeout=10).topics

    delivered = {}

    def on_delivery(error, message):
        assert error is None, error
        delivered[(message.partition(), message.offset())] = (message.key(), message.value())

    producer = Producer({"bootstrap.servers": BROKER, "acks": "all", "compression.type": "zstd",
                         "partitioner": "murmur2_random"})
    for i in range(80):
        producer.produce("ck-events", key=f"device-{i % 4}", value=f"reading {i}",
                         headers=[("unit", b"celsius")], on_delivery=on_delivery)
    assert producer.flush(10) == 0
    assert len(delivered) == 80

    consumer = Consumer({"bootstrap.servers": BROKER, "group.id": "unused-assign-only",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition("ck-events", p, OFFSET_BEGINNING) for p in range(2)])
    received = {}
    deadline = time.time() + 20
    while len(received) < 80 and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        assert message.headers() == [("unit", b"celsius")], message.headers()
        received[(message.partition(), message.offset())] = (message.key(), message.value())
    consumer.close()
    assert received == delivered, f"confluent-kafka: {len(received)} of 80 back"

    for future in admin.delete_topics(["ck-events"]).values():
        future.result(timeout=10)
    print("confluent-kafka ok")


kafka_python()
confluent()
