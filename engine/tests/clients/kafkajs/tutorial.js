// The kafkajs getting-started producer and consumer (plus admin and gzip) against ringlog
// (argv[2]). Assertions check every acknowledgement and every message consumed; a failure
// exits non-zero.
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

  // The tutorial consumer: a group, subscribe from the beginning, eachMessage.
  const consumer = kafka.consumer({ groupId: 'test-group' })
  await consumer.connect()
  await consumer.subscribe({ topic: 'test-topic', fromBeginning: true })
  const seen = []
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${seen.length} of 52 messages consumed`)), 30000)
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        seen.push(`${message.key.toString()}=${message.value.toString()}`)
        if (seen.length === 52) {
          clearTimeout(timer)
          resolve()
        }
      }
    })
  })
  await consumer.disconnect()
  const expected = ['key1=Hello KafkaJS user!', 'key2=hey hey!']
  for (let i = 0; i < 50; i++) expected.push(`key${i % 3}=gzip ${i}`)
  assert.deepStrictEqual(seen.slice().sort(), expected.slice().sort())

  // The group's offsets were committed: a restarted member of the group gets nothing again.
  const committed = await admin.fetchOffsets({ groupId: 'test-group', topics: ['test-topic'] })
  const committedTotal = committed[0].partitions.reduce((sum, p) => sum + Math.max(Number(p.offset), 0), 0)
  assert.strictEqual(committedTotal, 52, JSON.stringify(committed))
  await admin.disconnect()
  console.log('kafkajs ok')
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
