#!/usr/bin/env node
// Entry point: hands argv to the CLI and exits with its code (64 usage, 75 tempfail, 78 config).
// first: it tunes the heap before the other modules allocate anything
import '../lib/heap-tuning.js';
import { main } from '../lib/cli.js';

const command = process.argv[2];
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // serve holds timers and sockets until told to stop; once it returned, leave at once
    if (command === 'serve') process.exit(code);
  },
  (err: Error) => {
    process.stderr.write(`calendar-link-filter: ${err.stack ?? err.message}\n`);
    process.exit(70);
  },
);
