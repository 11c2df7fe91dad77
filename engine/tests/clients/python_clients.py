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


def kafka_python_group():
    """Two KafkaConsumers in group py-app split three partitions; after they commit and
    close, a new member of the group gets only what was produced since."""
    import threading
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=BROKER)
    admin.create_topics([NewTopic("py-group", num_partitions=3, replication_factor=1)])
    admin.close()
    stop = threading.Event()
    received = [[], []]
    assigned = [set(), set()]
    consumers = [KafkaConsumer("py-group", bootstrap_servers=BROKER, group_id="py-app",
                               enable_auto_commit=False, auto_offset_reset="earliest")
                 for _ in range(2)]

    def run(at):
        consumer = consumers[at]
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=100).values():
                for record in records:
                    received[at].append((record.partition, record.value.decode()))
            assigned[at] = {tp.partition for tp in consumer.assignment()}
        consumer.commit()
        consumer.close()

    threads = [threading.Thread(target=run, args=(at,)) for at in range(2)]
    for thread in threads:
        thread.start()
    # Wait for a settled assignment: all three partitions, split 2 + 1, unchanged for 1 s.
    deadline = time.time() + 30
    last, since = None, time.time()
    while True:
        now = [frozenset(a) for a in assigned]
        if now != last:
            last, since = now, time.time()
        if sum(len(a) for a in now) == 3 and all(now) and time.time() - since > 1:
            break
        assert time.time() < deadline, f"kafka-python group never settled: {now}"
        time.sleep(0.1)
    assert sorted(len(a) for a in last) == [1, 2], last
    producer = KafkaProducer(bootstrap_servers=BROKER, acks="all")
    for i in range(60):
        producer.send("py-group", key=f"k{i % 5}".encode(), value=f"m{i}".encode())
    producer.flush()
    deadline = time.time() + 20
    while sum(len(r) for r in received) < 60 and time.time() < deadline:
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join()
    values = sorted(v for r in received for _, v in r)
    assert values == sorted(f"m{i}" for i in range(60)), f"kafka-python group got {len(values)}"
    for at in range(2):
        assert all(p in last[at] for p, _ in received[at]), (at, last[at])

    for i in range(60, 70):
        producer.send("py-group", value=f"m{i}".encode())
    producer.flush()
    producer.close()
    again = KafkaConsumer("py-group", bootstrap_servers=BROKER, group_id="py-app",
                          enable_auto_commit=False, auto_offset_reset="earliest",
                          consumer_timeout_ms=4000)
    later = sorted(record.value.decode() for record in again)
    again.close()
    assert later == sorted(f"m{i}" for i in range(60, 70)), later
    print("kafka-python group ok")


def confluent_manual_commits():
    """A confluent-kafka consumer commits some messages one by one, synchronously; the next
    member of its group starts exactly after them."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": BROKER})
    for future in admin.create_topics([NewTopic("ck-manual", num_partitions=2, replication_factor=1)]).values():
        future.result(timeout=10)
    producer = Producer({"bootstrap.servers": BROKER, "acks": "all"})
    for i in range(40):
        producer.produce("ck-manual", key=f"k{i % 7}", value=f"v{i}")
    assert producer.flush(10) == 0

    settings = {"bootstrap.servers": BROKER, "group.id": "ck-app", "enable.auto.commit": False,
                "auto.offset.reset": "earliest"}
    consumer = Consumer(settings)
    consumer.subscribe(["ck-manual"])
    seen = []
    deadline = time.time() + 30
    while len(seen) < 40 and time.time() < deadline:
        message = consumer.poll(0.2)
        if message is None:
            continue
        assert message.error() is None, message.error()
        seen.append((message.partition(), message.offset(), message.value().decode()))
        if len(seen) <= 25:
            consumer.commit(message=message, asynchronous=False)
    assert len(seen) == 40, len(seen)
    committed_to = {}
    for partition, offset, _ in seen[:25]:
        committed_to[partition] = offset + 1
    committed = consumer.committed([TopicPartition("ck-manual", p) for p in range(2)], timeout=10)
    for tp in committed:
        assert tp.offset == committed_to.get(tp.partition, -1001), (tp, committed_to)
    consumer.close()

    expected = sorted(v for p, o, v in seen if o >= committed_to.get(p, 0))
    again = Consumer(settings)
    again.subscribe(["ck-manual"])
    rest = []
    deadline = time.time() + 20
    while len(rest) < len(expected) and time.time() < deadline:
        message = again.poll(0.2)
        if message is not None and message.error() is None:
            rest.append(message.value().decode())
    extra = again.poll(1.0)
    again.close()
    assert extra is None, extra.value()
    assert sorted(rest) == expected, (rest, expected)
    print("confluent-kafka manual commits ok")


def confluent_authorized_operations():
    # With no authorizer Kafka reports every operation that applies (8 for a topic, 7 for
    # the cluster); admin tools show "no permissions" when none come back.
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation, AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": BROKER})
    admin.create_topics([NewTopic("py-acl", num_partitions=1, replication_factor=1)])["py-acl"].result(10)
    described = admin.describe_topics(TopicCollection(["py-acl"]), include_authorized_operations=True)
    operations = set(described["py-acl"].result(10).authorized_operations)
    expected = {
        AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE,
        AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
    }
    assert operations == expected, operations
    cluster = admin.describe_cluster(include_authorized_operations=True).result(10)
    expected = {
        AclOperation.CREATE, AclOperation.ALTER, AclOperation.DESCRIBE,
        AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS,
        AclOperation.IDEMPOTENT_WRITE,
    }
    assert set(cluster.authorized_operations) == expected, cluster.authorized_operations
    # Not asked for: none reported.
    plain = admin.describe_topics(TopicCollection(["py-acl"]))["py-acl"].result(10)
    assert not plain.authorized_operations, plain.authorized_operations
    print("confluent-kafka authorized operations ok")


def confluent_admin_offsets_on_an_active_group():
    # AlterConsumerGroupOffsets (generation -1, no member id) on a group with an active
    # member is refused with UNKNOWN_MEMBER_ID, as Kafka refuses it.
    from confluent_kafka import (Consumer, ConsumerGroupTopicPartitions, KafkaError,
                                 KafkaException, TopicPartition)
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": BROKER})
    admin.create_topics([NewTopic("py-active", num_partitions=1, replication_factor=1)])["py-active"].result(10)
    consumer = Consumer({"bootstrap.servers": BROKER, "group.id": "py-active-group"})
    consumer.subscribe(["py-active"])
    deadline = time.time() + 30
    while not consumer.assignment() and time.time() < deadline:
        consumer.poll(0.2)
    assert consumer.assignment(), "the member got its partition"
    wanted = [ConsumerGroupTopicPartitions("py-active-group", [TopicPartition("py-active", 0, 5)])]
    codes = []
    try:
        result = admin.alter_consumer_group_offsets(wanted)["py-active-group"].result(10)
        codes = [tp.error.code() for tp in result.topic_partitions if tp.error is not None]
    except KafkaException as error:
        codes = [error.args[0].code()]
    assert codes == [KafkaError.UNKNOWN_MEMBER_ID], codes
    consumer.close()
    print("confluent-kafka admin offsets on an active group ok")


def kafka_python_delete_records():
    # DeleteRecords through kafka-python's admin: the low watermark moves, a consumer from the
    # beginning starts there, and an offset past the high watermark is OFFSET_OUT_OF_RANGE.
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic
    from kafka.errors import OffsetOutOfRangeError

    admin = KafkaAdminClient(bootstrap_servers=BROKER)
    admin.create_topics([NewTopic("py-trim", num_partitions=1, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=BROKER, acks="all")
    for i in range(10):
        producer.send("py-trim", value=f"record {i}".encode()).get(timeout=10)
    producer.close()
    tp = TopicPartition("py-trim", 0)
    result = admin.delete_records({tp: 4})
    assert result[tp]["low_watermark"] == 4 and result[tp]["error_code"] == 0, result
    try:
        admin.delete_records({tp: 11})
        raise AssertionError("an offset past the high watermark was accepted")
    except OffsetOutOfRangeError:
        pass
    admin.close()
    consumer = KafkaConsumer(bootstrap_servers=BROKER, enable_auto_commit=False, consumer_timeout_ms=3000)
    consumer.assign([tp])
    assert consumer.beginning_offsets([tp]) == {tp: 4}, consumer.beginning_offsets([tp])
    consumer.seek_to_beginning(tp)
    got = []
    for message in consumer:
        got.append((message.offset, message.value))
        if len(got) == 6:
            break
    consumer.close()
    assert got == [(i, f"record {i}".encode()) for i in range(4, 10)], got
    print("kafka-python delete_records ok")


def kafka_python_broker_configs():
    # Broker configs through kafka-python's admin: a dynamic one set and described with its
    # source; a static one and a bad value are INVALID_REQUEST (42) and an unknown name
    # INVALID_CONFIG (40), as Kafka answers (the client's own check of the names is switched
    # off so that the broker answers).
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=BROKER)
    broker = ConfigResource(ConfigResourceType.BROKER, "0", configs={"log.roll.ms": "3600000"})
    result = admin.alter_configs([broker], raise_on_unknown=False, incremental=False)
    assert result == {"broker": {"0": "OK"}}, result
    # kafka-python's describe shows the modified configs by default: only this one.
    described = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "0")])
    modified = {name: (entry["value"], entry["config_source"])
                for name, entry in described["broker"]["0"].items()}
    assert modified == {"log.roll.ms": ("3600000", "DYNAMIC_BROKER_CONFIG")}, described
    for configs, code in [
        ({"log.dirs": "/elsewhere"}, 42),
        ({"log.segment.bytes": "5"}, 42),
        ({"no.such.config": "1"}, 40),
    ]:
        resource = ConfigResource(ConfigResourceType.BROKER, "0", configs=configs)
        result = admin.alter_configs([resource], raise_on_unknown=False, incremental=False)
        answer = list(result["broker"].values())[0]
        assert answer.startswith(f"[Error {code}]"), (configs, answer)
    admin.close()
    print("kafka-python broker configs ok")


kafka_python()
confluent()
kafka_python_group()
confluent_manual_commits()
confluent_authorized_operations()
confluent_admin_offsets_on_an_active_group()
kafka_python_delete_records()
kafka_python_broker_configs()
