#!/usr/bin/env node
// A test assistant for `aiwatch audit` that hangs, with a child that hangs too: the per-run
// timeout must kill both (by PID).
'use strict';
const child = require('child_process').spawn('sleep', ['1000'], { stdio: 'ignore' });
// The suite checks that this PID is gone after the audit.
console.log(`child ${child.pid}`);
setInterval(() => {}, 1000);
