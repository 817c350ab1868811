#!/usr/bin/env node
import { main } from '../dist/cli/main.js';

main(process.argv).catch((err) => {
  process.stderr.write(`rampart: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(2);
});
