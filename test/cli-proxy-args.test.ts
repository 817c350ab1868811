import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const BIN = join(import.meta.dirname, '..', 'src', 'cli', 'bin.ts');
const base = ['proxy', '--mesh', 'm.yaml', '-c', 'p.yaml', '--workload', 'default/x', '--ca', 'ca'];

// One row per bad option: the proxy refuses to start (exit 2) and names the option.
const rows: Array<[string[], RegExp]> = [
  [['--upstream', '9001'], /--upstream 9001: write it as LOCALPORT=HOST:PORT/],
  [['--upstream', '70000=reviews:9080'], /--upstream 70000=reviews:9080/],
  [['--outbound-port', 'x'], /--outbound-port: not a port/],
  [['--admin-port', '-1'], /--admin-port: not a port/],
  [['--workers', '0'], /--workers: a whole number from 1 to 64/],
  [['--max-headers', '1.5'], /--max-headers: not a positive whole number/],
  [['--idle-timeout', 'soon'], /--idle-timeout "soon" is not a positive duration/],
  [['--svid-ttl', '-1h'], /--svid-ttl/],
  [['--access-log', 'file'], /--access-log takes stdout or off/],
];

for (const [args, message] of rows) {
  test(`rampart proxy ${args.join(' ')}: exit 2 with the reason`, () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', BIN, ...base, ...args], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, message);
  });
}

// Where the configuration comes from: local files and a CA, or a control plane with a token and the roots.
const sourceRows: Array<[string, string[], RegExp]> = [
  ['neither files nor a control plane', ['proxy', '--workload', 'default/x'], /give either --mesh, --config and --ca \(local files\), or --control-plane, --token and --root-cert/],
  ['a control plane without a token', ['proxy', '--workload', 'default/x', '--control-plane', 'https://127.0.0.1:1', '--root-cert', 'r.pem'], /--control-plane needs --token FILE .* and --root-cert FILE/],
  ['a control plane with several workers', ['proxy', '--workload', 'default/x', '--control-plane', 'https://127.0.0.1:1', '--token', 't', '--root-cert', 'r.pem', '--workers', '2'], /--workers is not available with --control-plane/],
  ['a token file that is not there', ['proxy', '--workload', 'default/x', '--control-plane', 'https://127.0.0.1:1', '--token', '/nonexistent/token', '--root-cert', 'r.pem'], /ENOENT.*\/nonexistent\/token/],
  ['a token that is not a JWT', ['proxy', '--workload', 'default/x', '--control-plane', 'https://127.0.0.1:1', '--token', join(import.meta.dirname, '..', 'package.json'), '--root-cert', join(import.meta.dirname, '..', 'package.json')], /the bootstrap token cannot be read/],
];

for (const [name, args, message] of sourceRows) {
  test(`rampart proxy with ${name}: exit 2 with the reason`, () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, message);
  });
}
