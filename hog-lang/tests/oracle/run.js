// Runs HogVM bytecode files through PostHog's reference VM (@posthog/hogvm) and prints, as JSON,
// what each printed and whether it failed: {"file.hoge": {"stdout": "...", "error": null}}.
// Usage: node run.js FILE.hoge...
'use strict'
const fs = require('fs')
const { exec } = require('@posthog/hogvm')

// PostHog's CLI uses RE2; JavaScript's RegExp accepts the same syntax for the patterns tests use.
// RE2's inline (?i) becomes the `i` flag.
function toRegExp(pattern) {
    let flags = ''
    while (pattern.startsWith('(?i)')) {
        pattern = pattern.slice(4)
        flags = 'i'
    }
    return new RegExp(pattern, flags)
}

const results = {}
for (const file of process.argv.slice(2)) {
    const lines = []
    const original = console.log
    console.log = (...args) => lines.push(args.join(' '))
    let error = null
    try {
        const bytecode = JSON.parse(fs.readFileSync(file, 'utf8'))
        const res = exec(bytecode, {
            timeout: 60000,
            external: {
                regex: {
                    match: (regex, value) => toRegExp(regex).test(value),
                    extract: (regex, value) => {
                        const m = toRegExp(regex).exec(value)
                        return m ? (m[1] !== undefined ? m[1] : m[0]) : ''
                    },
                },
                crypto: require('crypto'),
            },
        })
        if (res.error) {
            error = String(res.error.message || res.error)
        } else if (!res.finished) {
            error = 'suspended on ' + res.asyncFunctionName
        }
    } catch (e) {
        error = String(e && e.message ? e.message : e)
    } finally {
        console.log = original
    }
    results[file] = { stdout: lines.length ? lines.join('\n') + '\n' : '', error }
}
process.stdout.write(JSON.stringify(results))
