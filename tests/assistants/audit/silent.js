#!/usr/bin/env node
// A test assistant for `aiwatch audit` that never calls an API: the audit must say inconclusive.
'use strict';
console.log('nothing to do');
