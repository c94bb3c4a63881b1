// Drives the real posthog-node SDK against a hogpipe server (used by hogpipe/tests/sdk.rs).
//
// Environment:
//   HOGPIPE_SDK_NODE_DIR  directory holding node_modules/posthog-node (scripts/install-sdks.sh)
//   HOGPIPE_HOST          capture URL, e.g. http://127.0.0.1:PORT
//   HOGPIPE_TOKEN         project token
//   HOGPIPE_RUN           a name for this run, put in every distinct id
//   HOGPIPE_GZIP          "1" to gzip upload bodies (the SDK's default), "0" for disableCompression
//   HOGPIPE_HISTORICAL    "1" to send as historicalMigration
//   HOGPIPE_BATCH         number of events in the bulk part (default 500)
//
// Prints the same JSON lines as capture.py: {"config": {...}}, then one line per event the SDK
// was asked to send ({"uuid", "event", "distinct_id", "properties", "top"}). Exits 1 if the SDK
// reported any error.

import { createRequire } from 'node:module'
import { randomUUID } from 'node:crypto'
import path from 'node:path'
import { readFileSync } from 'node:fs'

const env = process.env
const require = createRequire(path.join(env.HOGPIPE_SDK_NODE_DIR, 'package.json'))
const { PostHog } = require('posthog-node')
const sdkVersion = JSON.parse(
  readFileSync(path.join(env.HOGPIPE_SDK_NODE_DIR, 'node_modules', 'posthog-node', 'package.json'), 'utf8'),
).version

const RUN = env.HOGPIPE_RUN || 'node'
const GZIP = env.HOGPIPE_GZIP !== '0'
const HISTORICAL = env.HOGPIPE_HISTORICAL === '1'
const BATCH = Number(env.HOGPIPE_BATCH || '500')

const errors = []
const client = new PostHog(env.HOGPIPE_TOKEN, {
  host: env.HOGPIPE_HOST,
  disableCompression: !GZIP,
  historicalMigration: HISTORICAL,
  flushAt: 20,
  maxBatchSize: 100,
  maxQueueSize: 100000,
  flushInterval: 500,
  fetchRetryCount: 1,
  fetchRetryDelay: 200,
})
client.on('error', (e) => errors.push(String(e && e.stack ? e.stack : e)))

// The SDK generates the uuid of identify/alias/groupIdentify itself and reports each queued
// message through its event emitter: remember them by event name and distinct id.
const queued = new Map()
for (const type of ['capture', 'identify', 'alias']) {
  client.on(type, (message) => {
    if (message && typeof message === 'object') queued.set(`${message.event}\u0000${message.distinct_id}`, message.uuid)
  })
}

const out = []
const emit = (line) => out.push(JSON.stringify(line))
emit({
  config: {
    sdk: 'posthog-node',
    version: sdkVersion,
    gzip: !client.disableCompression,
    historical_migration: client.historicalMigration,
  },
})

const later = [] // events whose uuid the SDK picks: looked up once queued
function sentLater(event, distinctId, properties, top) {
  later.push({ event, distinct_id: distinctId, properties: properties || {}, top: top || {} })
}

function capture(event, distinctId, properties, groups) {
  const uuid = randomUUID()
  client.capture({ distinctId, event, properties, uuid, ...(groups ? { groups } : {}) })
  const expected = { ...properties }
  if (groups) expected.$groups = groups
  emit({ uuid, event, distinct_id: distinctId, properties: expected, top: {} })
}

const user = `${RUN}-user-\u00e9\u00e8-\u{1f994}`

capture('nested properties', user, {
  plan: 'pro',
  nested: { a: { b: { c: [1, 2, { d: null, e: [true, false] }] } }, empty: {}, list: [] },
  deep: JSON.parse('['.repeat(40) + ']'.repeat(40)),
  numbers: { int: 42, neg: -7, big: 9007199254740991, float: 3.25, small: 1e-7, zero: 0 },
  nothing: null,
  yes: true,
  '': 'empty key',
  'key.with.dots': 'dots',
  'key with spaces and \u00fcml\u00e4uts': 'k',
})
capture('unicode \u00e9v\u00e9nement \u4e8b\u4ef6 \u{1f680}', user, {
  emoji: '\u{1f994}\u{1f680}\u{1f468}\u200d\u{1f469}\u200d\u{1f467}',
  cjk: '\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8',
  rtl: '\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd',
  combining: 'e\u0301a\u0300',
  escapes: 'quote " backslash \\ slash / newline \n tab \t cr \r nul \u0000 bell \u0007',
  bom: '\ufeffstart',
  line_sep: 'a\u2028b\u2029c',
  '\u{1f511} key': 'emoji key',
  long: '\u00e9'.repeat(5000),
})
capture('$pageview', user, { $current_url: 'https://example.com/p?q=1&r=\u00e9#h', $referrer: '' })
capture('with groups', user, { seat: 3 }, { company: `${RUN}-acme`, project: 'p-\u00e9' })

// identify with $set / $set_once.
const identified = `${RUN}-identified`
const set = { email: 'max@example.com', name: 'Max \u{1f994}', tags: ['a', 'b'] }
const setOnce = { first_seen: '2024-01-01T00:00:00Z', initial: { ref: 'ads' } }
const anon = `${RUN}-anon-${randomUUID()}`
client.identify({ distinctId: identified, properties: { $set: set, $set_once: setOnce, $anon_distinct_id: anon } })
sentLater('$identify', identified, { $set: set, $set_once: setOnce, $anon_distinct_id: anon })

// setPersonProperties: a $set event with both.
const personSet = { plan: 'enterprise', seats: 12, meta: { k: [1, '\u00e9'] } }
const personSetOnce = { signup_source: '\u00e9-mail', first: true }
client.setPersonProperties({ distinctId: `${RUN}-set`, properties: personSet, propertiesOnce: personSetOnce })
sentLater('$set', `${RUN}-set`, { $set: personSet, $set_once: personSetOnce })

// alias and group identify.
client.alias({ distinctId: `${RUN}-old-id`, alias: `${RUN}-new-id` })
sentLater('$create_alias', `${RUN}-old-id`, { distinct_id: `${RUN}-old-id`, alias: `${RUN}-new-id` })
const groupProps = { name: 'Acme \u00e9', employees: 11, address: { city: 'Z\u00fcrich' } }
client.groupIdentify({ groupType: 'company', groupKey: `${RUN}-acme`, properties: groupProps, distinctId: `${RUN}-grouper` })
sentLater('$groupidentify', `${RUN}-grouper`, { $group_type: 'company', $group_key: `${RUN}-acme`, $group_set: groupProps })

// Many events: the SDK sends them in batches of at most maxBatchSize.
for (let i = 0; i < BATCH; i++) {
  capture('bulk event', `${RUN}-bulk-${i % 37}`, { i, run: RUN, payload: 'x'.repeat(i % 200), tags: [i, String(i), { n: i }] })
}

await client.flush()
await client.shutdown()

for (const e of later) {
  const uuid = queued.get(`${e.event}\u0000${e.distinct_id}`)
  if (uuid === undefined) errors.push(`the SDK never queued ${e.event} for ${e.distinct_id}`)
  else emit({ uuid, ...e })
}
process.stdout.write(out.join('\n') + '\n')
if (errors.length > 0) {
  for (const e of errors) process.stderr.write(`capture.mjs: SDK error: ${e}\n`)
  process.exitCode = 1
}
