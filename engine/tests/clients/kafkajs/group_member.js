// The kafkajs tutorial consumer, one group member per process (argv: broker topic group).
// Prints "assigned <json>" on every group join and "message <partition> <value>" per
// message; disconnects cleanly (LeaveGroup) on SIGTERM.
const { Kafka, logLevel } = require('kafkajs')

const [broker, topic, groupId] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'my-app', brokers: [broker], logLevel: logLevel.ERROR })
const consumer = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 500 })

async function main () {
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    console.log(`assigned ${JSON.stringify(payload.memberAssignment[topic] || [])}`)
  })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      console.log(`message ${partition} ${message.value.toString()}`)
    }
  })
}

process.on('SIGTERM', async () => {
  await consumer.disconnect()
  process.exit(0)
})

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
