// The kafkajs getting-started producer (plus admin and gzip) against ringlog (argv[2]).
// Assertions check every acknowledgement; a failure exits non-zero.
// The tutorial's consumer needs consumer groups, which arrive with the group coordinator.
const assert = require('assert')
const { Kafka, CompressionTypes, logLevel } = require('kafkajs')

const broker = process.argv[2]
const kafka = new Kafka({ clientId: 'my-app', brokers: [broker], logLevel: logLevel.ERROR })

async function main () {
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic: 'test-topic', numPartitions: 3 }] })
  const topics = await admin.listTopics()
  assert.ok(topics.includes('test-topic'), `topics: ${topics}`)

  const producer = kafka.producer()
  await producer.connect()
  const plain = await producer.send({
    topic: 'test-topic',
    messages: [{ key: 'key1', value: 'Hello KafkaJS user!' }, { key: 'key2', value: 'hey hey!' }]
  })
  for (const result of plain) assert.strictEqual(result.errorCode, 0)
  const zipped = await producer.send({
    topic: 'test-topic',
    compression: CompressionTypes.GZIP,
    messages: Array.from({ length: 50 }, (_, i) => ({ key: `key${i % 3}`, value: `gzip ${i}` }))
  })
  for (const result of zipped) assert.strictEqual(result.errorCode, 0)
  await producer.disconnect()

  const offsets = await admin.fetchTopicOffsets('test-topic')
  const total = offsets.reduce((sum, partition) => sum + Number(partition.high), 0)
  assert.strictEqual(total, 52, JSON.stringify(offsets))
  await admin.disconnect()
  console.log('kafkajs ok')
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
