#!/usr/bin/env node
// A test assistant for `aiwatch audit` that hangs, with a child that hangs too: the per-run
// timeout must kill both (by PID).
'use strict';
require('child_process').spawn('sleep', ['1000'], { stdio: 'ignore' });
setInterval(() => {}, 1000);
