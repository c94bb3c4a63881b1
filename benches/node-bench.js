// Times PostHog's reference VM (@posthog/hogvm) on the programs `hogpipe bench hog --export DIR`
// wrote, doing the same work hogpipe's harness does, and prints JSON:
// {"fib": {"seconds_per_iteration": …, "iterations": …}, …}. Like hogpipe's harness, it reports
// the median iteration (per-event programs: the median pass, per event), at least 3 of them.
// Usage: node benches/node-bench.js DIR [MIN_SECONDS]
'use strict'
const fs = require('fs')
const path = require('path')
const { exec } = require(path.join(__dirname, '../hog-lang/tests/oracle/node_modules/@posthog/hogvm'))

const dir = process.argv[2]
const minSeconds = Number(process.argv[3] || 1)
const BATCH = 1000 // events per batch, as hogpipe's harness (hog_lang::bench::BATCH)
const events = JSON.parse(fs.readFileSync(path.join(dir, 'events.json'), 'utf8'))
const options = (globals) => ({
    globals,
    timeout: 600000,
    external: {
        regex: {
            match: (regex, value) => {
                let flags = ''
                if (regex.startsWith('(?i)')) {
                    regex = regex.slice(4)
                    flags = 'i'
                }
                return new RegExp(regex, flags).test(value)
            },
        },
        crypto: require('crypto'),
    },
})

function median(xs) {
    const s = [...xs].sort((a, b) => a - b)
    return s[Math.floor(s.length / 2)]
}

function check(res, name) {
    if (res.error) throw new Error(`${name}: ${res.error.message || res.error}`)
    if (!res.finished) throw new Error(`${name}: suspended on ${res.asyncFunctionName}`)
    return res.result
}

const results = {}
for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.hoge')).sort()) {
    const name = file.slice(0, -5)
    const bytecode = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'))
    const meta = JSON.parse(fs.readFileSync(path.join(dir, name + '.json'), 'utf8'))
    const log = console.log
    console.log = () => {}
    try {
        if (meta.per_event) {
            let elapsed = 0
            let iterations = 0
            let kept = 0
            const passes = []
            while (passes.length < 3 || elapsed < minSeconds) {
                // As hogpipe's harness: a batch of fresh copies, then only the VM is timed.
                let pass = 0
                kept = 0
                for (let i = 0; i < events.length; i += BATCH) {
                    const copies = JSON.parse(JSON.stringify(events.slice(i, i + BATCH)))
                    const outputs = []
                    const start = process.hrtime.bigint()
                    for (const event of copies) {
                        const out = check(exec(bytecode, options({ event })), name)
                        if (out !== null) {
                            kept++
                            outputs.push(out)
                        }
                    }
                    pass += Number(process.hrtime.bigint() - start) / 1e9
                }
                elapsed += pass
                passes.push(pass / events.length)
                iterations += events.length
            }
            results[name] = { seconds_per_iteration: median(passes), iterations, kept }
        } else {
            check(exec(bytecode, options({})), name) // warm-up
            const times = []
            let elapsed = 0
            while (times.length < 3 || elapsed < minSeconds) {
                const start = process.hrtime.bigint()
                check(exec(bytecode, options({})), name)
                const t = Number(process.hrtime.bigint() - start) / 1e9
                times.push(t)
                elapsed += t
            }
            results[name] = { seconds_per_iteration: median(times), iterations: times.length }
        }
    } finally {
        console.log = log
    }
}
process.stdout.write(JSON.stringify(results) + '\n')
