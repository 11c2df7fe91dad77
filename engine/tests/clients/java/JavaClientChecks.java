// The Java client, Kafka's reference implementation of the protocol, against a running
// ringlog broker. Run by engine/tests/kafka_java.rs as a single-file program:
//
//   benches/kafka/kafka java engine/tests/clients/java/JavaClientChecks.java BOOTSTRAP CHECK
//
// CHECK is one of producer, group, commits, seek, admin, unsupported. Each check asserts what
// came back, record by record, prints "<check> ok" and exits 0; any failure throws and the
// JVM exits non-zero with the reason.

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class JavaClientChecks {
    static String bootstrap;

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: JavaClientChecks BOOTSTRAP producer|group|commits|seek|admin|unsupported");
            System.exit(2);
        }
        bootstrap = args[0];
        switch (args[1]) {
            case "producer" -> producer();
            case "group" -> group();
            case "commits" -> commits();
            case "seek" -> seek();
            case "admin" -> adminClient();
            case "unsupported" -> unsupported();
            default -> {
                System.err.println("unknown check " + args[1]);
                System.exit(2);
            }
        }
        System.out.println(args[1] + " ok");
        // Client threads may linger (metadata refreshes); the verdict is printed.
        System.exit(0);
    }

    static void check(boolean condition, String what) {
        if (!condition) {
            throw new AssertionError(what);
        }
    }

    static Admin admin() {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        return Admin.create(props);
    }

    static void createTopic(Admin admin, String topic, int partitions) throws Exception {
        admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(30, TimeUnit.SECONDS);
    }

    /// A producer with the client's defaults (idempotence on since 3.0) and acks=all.
    static KafkaProducer<String, String> producer(String clientId) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, clientId);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return new KafkaProducer<>(props);
    }

    static Properties consumerProps(String group) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        if (group != null) {
            props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        }
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return props;
    }

    /// Sends keyed records and returns what each was acknowledged as: partition/offset -> key=value.
    static Map<String, String> send(KafkaProducer<String, String> producer, String topic, int count, String tag)
            throws Exception {
        List<Future<RecordMetadata>> futures = new ArrayList<>();
        List<String> sent = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            String key = "key-" + (i % 10);
            String value = tag + "-" + i;
            futures.add(producer.send(new ProducerRecord<>(topic, key, value)));
            sent.add(key + "=" + value);
        }
        producer.flush();
        Map<String, String> acked = new TreeMap<>();
        for (int i = 0; i < count; i++) {
            RecordMetadata meta = futures.get(i).get(30, TimeUnit.SECONDS);
            check(meta.offset() >= 0, "acknowledged with offset " + meta.offset());
            String previous = acked.put(meta.partition() + "/" + meta.offset(), sent.get(i));
            check(previous == null, "two records acknowledged at " + meta.partition() + "/" + meta.offset());
        }
        return acked;
    }

    /// Creates the topic and sends `count` keyed records to it with a fresh producer.
    static Map<String, String> createAndSend(String topic, int partitions, int count) throws Exception {
        try (Admin admin = admin()) {
            createTopic(admin, topic, partitions);
        }
        try (KafkaProducer<String, String> producer = producer(topic + "-producer")) {
            return send(producer, topic, count, topic);
        }
    }

    static String at(ConsumerRecord<String, String> record) {
        return record.partition() + "/" + record.offset();
    }

    /// Reads a topic from the beginning with assign() until `expected` records came back.
    static Map<String, String> readAll(String topic, int partitions, int expected) {
        Map<String, String> got = new TreeMap<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(null))) {
            List<TopicPartition> tps = IntStream.range(0, partitions)
                    .mapToObj(p -> new TopicPartition(topic, p)).collect(Collectors.toList());
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            long deadline = System.currentTimeMillis() + 30000;
            while (got.size() < expected && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
                    String previous = got.put(at(record), record.key() + "=" + record.value());
                    check(previous == null, "read " + at(record) + " twice");
                }
            }
        }
        return got;
    }

    static void producer() throws Exception {
        String topic = "java-producer";
        Map<String, String> acked = createAndSend(topic, 4, 2000);
        Map<String, String> read = readAll(topic, 4, acked.size());
        check(read.equals(acked), "read back " + read.size() + " of " + acked.size()
                + " records, or different ones");
        // Java's default partitioner: one key, one partition.
        Map<String, Set<String>> partitionsOfKey = new HashMap<>();
        read.forEach((at, kv) -> partitionsOfKey.computeIfAbsent(kv.split("=")[0], k -> new HashSet<>())
                .add(at.split("/")[0]));
        partitionsOfKey.forEach((key, parts) -> check(parts.size() == 1, key + " landed on " + parts));
        // Per partition, offsets are dense from 0.
        Map<String, List<Long>> offsets = new TreeMap<>();
        read.keySet().forEach(at -> offsets.computeIfAbsent(at.split("/")[0], k -> new ArrayList<>())
                .add(Long.parseLong(at.split("/")[1])));
        offsets.forEach((p, list) -> {
            Collections.sort(list);
            for (int i = 0; i < list.size(); i++) {
                check(list.get(i) == i, "partition " + p + " offsets " + list);
            }
        });
    }

    /// One member of a consumer group on its own thread: subscribe(), poll, commitSync().
    static class Member implements Runnable {
        final String name;
        final Properties props;
        final String topic;
        final Map<String, String> consumed;
        final Set<TopicPartition> assignment = ConcurrentHashMap.newKeySet();
        final AtomicBoolean stop = new AtomicBoolean();
        volatile int generations;
        volatile Throwable failure;
        final Thread thread;

        Member(String name, Properties props, String topic, Map<String, String> consumed) {
            this.name = name;
            this.props = props;
            this.topic = topic;
            this.consumed = consumed;
            this.thread = new Thread(this, name);
            thread.start();
        }

        public void run() {
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
                consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                        consumer.commitSync();
                        assignment.removeAll(partitions);
                    }

                    public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                        assignment.addAll(partitions);
                        generations++;
                    }
                });
                while (!stop.get()) {
                    ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(100));
                    for (ConsumerRecord<String, String> record : records) {
                        String previous = consumed.put(at(record), record.key() + "=" + record.value());
                        check(previous == null, name + " got " + at(record) + " a second time");
                    }
                    if (!records.isEmpty()) {
                        consumer.commitSync();
                    }
                }
            } catch (Throwable t) {
                failure = t;
            }
        }

        void leave() throws InterruptedException {
            stop.set(true);
            thread.join(30000);
            check(!thread.isAlive(), name + " did not close");
            if (failure != null) {
                throw new AssertionError(name + " failed", failure);
            }
        }
    }

    static void waitFor(String what, long timeoutMs, java.util.function.BooleanSupplier condition)
            throws InterruptedException {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (!condition.getAsBoolean()) {
            check(System.currentTimeMillis() < deadline, "timed out waiting for " + what);
            Thread.sleep(50);
        }
    }

    static String assignments(List<Member> members) {
        return members.stream().map(m -> m.name + "=" + m.assignment).collect(Collectors.joining(" "));
    }

    static void group() throws Exception {
        String topic = "java-group";
        String group = "java-group-members";
        try (Admin admin = admin()) {
            createTopic(admin, topic, 6);
        }
        Map<String, String> consumed = new ConcurrentHashMap<>();
        List<Member> members = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            members.add(new Member("member-" + i, consumerProps(group), topic, consumed));
        }
        waitFor("three members with two partitions each: " + assignments(members), 60000,
                () -> members.stream().allMatch(m -> m.assignment.size() == 2)
                        && members.stream().flatMap(m -> m.assignment.stream()).distinct().count() == 6);
        Map<String, String> acked = new TreeMap<>();
        try (KafkaProducer<String, String> producer = producer("java-group-producer")) {
            acked.putAll(send(producer, topic, 600, "before"));
            waitFor("600 records consumed, " + consumed.size() + " so far", 30000,
                    () -> consumed.size() >= 600);
            check(new TreeMap<>(consumed).equals(acked), "the group consumed other records than were acked");

            try (Admin admin = admin()) {
                ConsumerGroupDescription description = admin.describeConsumerGroups(List.of(group))
                        .describedGroups().get(group).get(30, TimeUnit.SECONDS);
                check(description.members().size() == 3, "describe shows " + description.members());
            }

            // One member leaves: the other two take over its partitions, three each.
            Member leaving = members.remove(0);
            leaving.leave();
            waitFor("two members with three partitions each: " + assignments(members), 60000,
                    () -> members.stream().allMatch(m -> m.assignment.size() == 3)
                            && members.stream().flatMap(m -> m.assignment.stream()).distinct().count() == 6);
            acked.putAll(send(producer, topic, 600, "after"));
            waitFor("1200 records consumed, " + consumed.size() + " so far", 30000,
                    () -> consumed.size() >= 1200);
        }
        check(new TreeMap<>(consumed).equals(acked),
                "after the rebalance the group consumed other records than were acked");
        for (Member member : members) {
            member.leave();
        }
        // Every record was committed: the group's offsets are the log end offsets.
        try (Admin admin = admin()) {
            Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                    .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
            IntStream.range(0, 6).forEach(p -> latest.put(new TopicPartition(topic, p), OffsetSpec.latest()));
            var ends = admin.listOffsets(latest).all().get(30, TimeUnit.SECONDS);
            for (int p = 0; p < 6; p++) {
                TopicPartition tp = new TopicPartition(topic, p);
                check(committed.containsKey(tp) && committed.get(tp).offset() == ends.get(tp).offset(),
                        tp + " committed " + committed.get(tp) + ", log end " + ends.get(tp).offset());
            }
        }
    }

    static void commits() throws Exception {
        String topic = "java-commits";
        Map<String, String> acked = createAndSend(topic, 2, 100);
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        // Manual commit of a chosen offset, read back by a new consumer of the group.
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps("java-manual"))) {
            consumer.assign(List.of(p0, p1));
            consumer.commitSync(Map.of(p0, new OffsetAndMetadata(3, "three"), p1, new OffsetAndMetadata(0)));
            Map<TopicPartition, OffsetAndMetadata> back = consumer.committed(Set.of(p0, p1));
            check(back.get(p0).offset() == 3 && "three".equals(back.get(p0).metadata()), "committed " + back);
            check(back.get(p1).offset() == 0, "committed " + back);
        }
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps("java-manual"))) {
            consumer.assign(List.of(p0));
            ConsumerRecords<String, String> records = ConsumerRecords.empty();
            long deadline = System.currentTimeMillis() + 30000;
            while (records.isEmpty() && System.currentTimeMillis() < deadline) {
                records = consumer.poll(Duration.ofMillis(200));
            }
            ConsumerRecord<String, String> first = records.iterator().next();
            check(first.offset() == 3, "a new member starts at the committed offset 3, got " + first.offset());
            check(acked.get("0/3").equals(first.key() + "=" + first.value()), "record at 0/3 is " + first);
        }
        // Auto commit: consume everything, close (which commits), then the offsets are the ends.
        Properties auto = consumerProps("java-auto");
        auto.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "true");
        auto.put(ConsumerConfig.AUTO_COMMIT_INTERVAL_MS_CONFIG, "200");
        Map<String, String> got = new TreeMap<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(auto)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 30000;
            while (got.size() < acked.size() && System.currentTimeMillis() < deadline) {
                consumer.poll(Duration.ofMillis(200)).forEach(r -> got.put(at(r), r.key() + "=" + r.value()));
            }
        }
        check(got.equals(acked), "auto-commit consumer read " + got.size() + " of " + acked.size());
        try (Admin admin = admin()) {
            Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets("java-auto")
                    .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            long total = committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
            check(total == acked.size(), "auto commit left offsets " + committed);
        }
    }

    static void seek() throws Exception {
        String topic = "java-seek";
        try (Admin admin = admin()) {
            createTopic(admin, topic, 1);
        }
        long base = System.currentTimeMillis() - 100_000;
        try (KafkaProducer<String, String> producer = producer("java-seek-producer")) {
            List<Future<RecordMetadata>> futures = new ArrayList<>();
            for (int i = 0; i < 50; i++) {
                // Timestamps 1 s apart, set by the producer (CreateTime).
                futures.add(producer.send(new ProducerRecord<>(topic, 0, base + i * 1000L, "k", "t" + i)));
            }
            for (int i = 0; i < 50; i++) {
                check(futures.get(i).get(30, TimeUnit.SECONDS).offset() == i, "offset of record " + i);
            }
        }
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(null))) {
            consumer.assign(List.of(tp));
            Map<TopicPartition, OffsetAndTimestamp> found =
                    consumer.offsetsForTimes(Map.of(tp, base + 20_500L));
            check(found.get(tp) != null && found.get(tp).offset() == 21
                    && found.get(tp).timestamp() == base + 21_000L, "offsetsForTimes gave " + found);
            Map<TopicPartition, OffsetAndTimestamp> none =
                    consumer.offsetsForTimes(Map.of(tp, base + 1_000_000L));
            check(none.get(tp) == null, "a time after every record gives null, got " + none);
            check(consumer.beginningOffsets(List.of(tp)).get(tp) == 0, "beginning offset");
            check(consumer.endOffsets(List.of(tp)).get(tp) == 50, "end offset");
            consumer.seek(tp, 42);
            List<String> values = new ArrayList<>();
            long deadline = System.currentTimeMillis() + 30000;
            while (values.size() < 8 && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
                    check(record.timestamp() == base + record.offset() * 1000L, "timestamp of " + record);
                    values.add(record.value());
                }
            }
            check(values.equals(List.of("t42", "t43", "t44", "t45", "t46", "t47", "t48", "t49")),
                    "after seek(42): " + values);
        }
    }

    static void adminClient() throws Exception {
        try (Admin admin = admin()) {
            DescribeClusterResult cluster = admin.describeCluster();
            check(cluster.nodes().get(30, TimeUnit.SECONDS).size() == 1, "one broker");
            check(cluster.controller().get(30, TimeUnit.SECONDS) != null, "a controller");
            check(cluster.clusterId().get(30, TimeUnit.SECONDS) != null, "a cluster id");

            createTopic(admin, "java-admin", 2);
            try {
                createTopic(admin, "java-admin", 2);
                check(false, "creating an existing topic succeeded");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof org.apache.kafka.common.errors.TopicExistsException,
                        "creating an existing topic: " + e.getCause());
            }
            check(admin.listTopics().names().get(30, TimeUnit.SECONDS).contains("java-admin"), "listed");
            TopicDescription description = admin.describeTopics(List.of("java-admin")).allTopicNames()
                    .get(30, TimeUnit.SECONDS).get("java-admin");
            check(description.partitions().size() == 2, "described " + description);

            admin.createPartitions(Map.of("java-admin", NewPartitions.increaseTo(5))).all()
                    .get(30, TimeUnit.SECONDS);
            waitFor("five partitions", 30000, () -> {
                try {
                    return admin.describeTopics(List.of("java-admin")).allTopicNames().get()
                            .get("java-admin").partitions().size() == 5;
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });

            ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, "java-admin");
            admin.incrementalAlterConfigs(Map.of(resource, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET))))
                    .all().get(30, TimeUnit.SECONDS);
            Config config = admin.describeConfigs(List.of(resource)).all().get(30, TimeUnit.SECONDS).get(resource);
            check("3600000".equals(config.get("retention.ms").value()), "retention.ms is " + config.get("retention.ms"));
            check(config.get("retention.ms").source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    "retention.ms source " + config.get("retention.ms").source());
            admin.incrementalAlterConfigs(Map.of(resource, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE))))
                    .all().get(30, TimeUnit.SECONDS);
            config = admin.describeConfigs(List.of(resource)).all().get(30, TimeUnit.SECONDS).get(resource);
            check(config.get("retention.ms").source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    "retention.ms after DELETE " + config.get("retention.ms"));

            // A group with committed offsets, as listed and described by the admin client.
            try (KafkaProducer<String, String> producer = producer("java-admin-producer")) {
                send(producer, "java-admin", 20, "a");
            }
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps("java-admin-group"))) {
                consumer.subscribe(List.of("java-admin"));
                int seen = 0;
                long deadline = System.currentTimeMillis() + 30000;
                while (seen < 20 && System.currentTimeMillis() < deadline) {
                    seen += consumer.poll(Duration.ofMillis(200)).count();
                }
                check(seen == 20, "the group read " + seen + " of 20");
                consumer.commitSync();
                Collection<GroupListing> groups = admin.listGroups(ListGroupsOptions.forConsumerGroups()).all()
                        .get(30, TimeUnit.SECONDS);
                check(groups.stream().anyMatch(g -> g.groupId().equals("java-admin-group")
                        && g.type().orElse(GroupType.CLASSIC) == GroupType.CLASSIC), "listed " + groups);
                ConsumerGroupDescription group = admin.describeConsumerGroups(List.of("java-admin-group"))
                        .describedGroups().get("java-admin-group").get(30, TimeUnit.SECONDS);
                check(group.members().size() == 1, "members " + group.members());
                check(group.members().iterator().next().assignment().topicPartitions().size() == 5,
                        "assignment " + group.members());
            }
            Map<TopicPartition, OffsetAndMetadata> offsets = admin.listConsumerGroupOffsets("java-admin-group")
                    .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            check(offsets.values().stream().mapToLong(OffsetAndMetadata::offset).sum() == 20, "offsets " + offsets);
            admin.deleteConsumerGroups(List.of("java-admin-group")).all().get(30, TimeUnit.SECONDS);

            admin.deleteTopics(List.of("java-admin")).all().get(30, TimeUnit.SECONDS);
            waitFor("java-admin deleted", 30000, () -> {
                try {
                    return !admin.listTopics().names().get().contains("java-admin");
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
        }
    }

    /// What ringlog does not implement fails at once with a named error, never a hang.
    static void unsupported() throws Exception {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "java-txn");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        long started = System.currentTimeMillis();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            producer.initTransactions();
            check(false, "initTransactions succeeded");
        } catch (KafkaException e) {
            long took = System.currentTimeMillis() - started;
            System.out.println("transactions: " + e.getClass().getName() + ": " + e.getMessage() + " after " + took + " ms");
            check(!(e instanceof org.apache.kafka.common.errors.TimeoutException), "initTransactions timed out: " + e);
            check(took < 20000, "initTransactions took " + took + " ms");
        }

        Properties consumer = consumerProps("java-new-protocol");
        consumer.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
        started = System.currentTimeMillis();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumer)) {
            c.subscribe(List.of("java-unsupported"));
            long deadline = System.currentTimeMillis() + 20000;
            while (System.currentTimeMillis() < deadline) {
                c.poll(Duration.ofMillis(200));
            }
            check(false, "group.protocol=consumer polled for 20 s without an error");
        } catch (KafkaException e) {
            long took = System.currentTimeMillis() - started;
            System.out.println("group.protocol=consumer: " + e.getClass().getName() + ": " + e.getMessage()
                    + " after " + took + " ms");
            check(e instanceof org.apache.kafka.common.errors.UnsupportedVersionException,
                    "group.protocol=consumer: " + e);
        }
    }
}
