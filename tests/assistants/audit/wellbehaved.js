#!/usr/bin/env node
// A well-behaved test assistant for `aiwatch audit`: its requests carry a random id, a
// timestamp and today's date (in the local zone, always the same format), and it streams (SSE).
// None of it depends on the host beyond the date's value, so every factor must be `no effect`.
'use strict';
const https = require('https');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');

// What the run's network looks like (printed, never sent): the suite checks it is loopback only.
const routes = fs.readFileSync('/proc/net/route', 'utf8').trim().split('\n').length - 1;
const dummyKey = (process.env.ANTHROPIC_API_KEY || '').includes('aiwatch-audit-dummy');
console.log(JSON.stringify({ interfaces: Object.keys(os.networkInterfaces()), routes, dummyKey }));

const base = new URL(process.env.ANTHROPIC_BASE_URL || 'https://api.anthropic.com');
const d = new Date();
const p = (n) => String(n).padStart(2, '0');
const date = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;

const body = JSON.stringify({
  model: 'claude-test',
  max_tokens: 64,
  stream: true,
  system: `You are a helpful assistant. Today's date is ${date}.`,
  metadata: { user_id: `user_${crypto.randomUUID()}`, sent_at: Date.now() },
  messages: [{ role: 'user', content: process.argv[2] || 'say ok' }],
});
const req = https.request({
  host: base.hostname,
  port: base.port || 443,
  path: '/v1/messages',
  method: 'POST',
  headers: {
    'content-type': 'application/json',
    'x-api-key': process.env.ANTHROPIC_API_KEY || '',
    'anthropic-version': '2023-06-01',
    'x-request-id': crypto.randomBytes(8).toString('hex'),
  },
}, (res) => {
  let out = '';
  res.on('data', (c) => { out += c; });
  res.on('end', () => {
    if (res.statusCode !== 200 || !out.includes('content_block_delta')) {
      console.error(`HTTP ${res.statusCode}: ${out}`);
      process.exit(1);
    }
    console.log('ok');
  });
});
req.on('error', (e) => { console.error(String(e)); process.exit(1); });
req.end(body);
