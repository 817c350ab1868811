// Builds the SO_ORIGINAL_DST addon (native/original_dst.c) at `npm ci` / `npm rebuild`, as package.json's
// "install" script. Transparent capture is optional: when the addon cannot be built (not Linux, no compiler,
// no Node headers) this writes the reason to build/native-error.txt, which src/capture/original-dst.ts puts
// in its ERR_CAPTURE_ADDON error, warns on one line, and exits 0, so that installing Rampart never fails for it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const buildDir = join(root, 'build');
const errorFile = join(buildDir, 'native-error.txt');
const FIX = 'Make sure g++, make and python3 are installed (Debian/Ubuntu: `apt-get install g++ make python3`), then run `npm rebuild` in the Rampart directory.';
// node-gyp downloads Node's headers when it finds none; a network that never answers must not hang npm ci.
const TIMEOUT_MS = 5 * 60 * 1000;

function onPath(cmd) {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, cmd)));
}

function fail(reason) {
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(errorFile, `${reason}\n`);
  process.stderr.write(`rampart: the original_dst addon was not built, so transparent capture will be unavailable (${errorFile})\n`);
  process.exit(0);
}

/** node-gyp as [command, ...args]: npm's own during npm scripts, else a local or PATH one. */
function nodeGyp() {
  const entry = process.env.npm_config_node_gyp;
  if (entry && existsSync(entry)) return [process.execPath, entry];
  if (spawnSync('npx', ['--no-install', 'node-gyp', '--version'], { stdio: 'ignore', timeout: 60_000 }).status === 0) {
    return ['npx', '--no-install', 'node-gyp'];
  }
  if (onPath('node-gyp')) return ['node-gyp'];
  // Run by hand (`node scripts/build-native.mjs`): the node-gyp that npm bundles, next to npm-cli.js.
  const npm = (process.env.PATH ?? '').split(delimiter).filter((dir) => dir !== '').map((dir) => join(dir, 'npm')).find((p) => existsSync(p));
  if (npm) {
    const bundled = join(dirname(realpathSync(npm)), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    if (existsSync(bundled)) return [process.execPath, bundled];
  }
  return undefined;
}

/**
 * Node's headers: a Node installed from a distribution package (/usr/bin/node) ships them in
 * <prefix>/include/node, and pointing node-gyp there saves it a download that offline machines cannot make.
 */
function localNodeDir() {
  if (process.env.npm_config_nodedir) return undefined;
  const prefix = dirname(dirname(process.execPath));
  return existsSync(join(prefix, 'include', 'node', 'common.gypi')) && existsSync(join(prefix, 'include', 'node', 'node_api.h'))
    ? prefix
    : undefined;
}

if (process.platform !== 'linux') {
  fail(`The original_dst addon reads SO_ORIGINAL_DST, which only Linux netfilter provides; this is ${process.platform}, so transparent capture is unavailable here (the rest of Rampart works).`);
}

const missing = [
  onPath(process.env.CXX ?? 'g++') ? undefined : (process.env.CXX ?? 'g++'),
  onPath('make') ? undefined : 'make',
  onPath(process.env.npm_config_python ?? process.env.PYTHON ?? 'python3') ? undefined : 'python3',
].filter((m) => m !== undefined);
if (missing.length > 0) {
  fail(`Building the original_dst addon (SO_ORIGINAL_DST for transparent capture) needs ${missing.join(', ')}, which ${missing.length === 1 ? 'is' : 'are'} not on PATH. ${FIX}`);
}

const gyp = nodeGyp();
if (gyp === undefined) {
  fail(`Building the original_dst addon (SO_ORIGINAL_DST for transparent capture) needs node-gyp, which comes with npm but was not found (no npm_config_node_gyp, none in node_modules, on PATH or next to npm). Run \`npm rebuild\` in the Rampart directory with npm's own node-gyp, or install node-gyp globally.`);
}

const nodeDir = localNodeDir();
const [cmd, ...args] = gyp;
const run = spawnSync(cmd, [...args, 'rebuild', ...(nodeDir ? [`--nodedir=${nodeDir}`] : [])], {
  cwd: root, encoding: 'utf8', timeout: TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024,
});
const output = `${run.stdout ?? ''}${run.stderr ?? ''}`;
if (run.status === 0 && existsSync(join(buildDir, 'Release', 'original_dst.node'))) {
  rmSync(errorFile, { force: true });
  process.exit(0);
}

const lines = output.split('\n');
const pick = (re) => lines.find((l) => re.test(l))?.replace(/^gyp ERR! stack /, '').trim();
const said = run.error?.code === 'ETIMEDOUT'
  ? `node-gyp did not finish within ${TIMEOUT_MS / 60_000} minutes`
  : run.error?.message ?? (/network connectivity/.test(output) ? 'node-gyp reports a network failure' : undefined)
    ?? pick(/^gyp: /) ?? pick(/\berror:/) ?? pick(/gyp ERR! stack Error:/) ?? `node-gyp exited with ${run.signal ?? `status ${run.status}`}`;
const noHeaders = /common\.gypi not found|node_api\.h: No such file|network connectivity/.test(output)
  || (run.error?.code === 'ETIMEDOUT' && /gyp http GET /.test(output));
if (noHeaders) {
  const url = pick(/gyp http GET /)?.replace(/^.*GET /, '');
  fail(`Building the original_dst addon (SO_ORIGINAL_DST for transparent capture) needs the C headers of Node ${process.version}, and node-gyp found none (${nodeDir ? `--nodedir=${nodeDir}` : process.env.npm_config_nodedir ? `npm_config_nodedir=${process.env.npm_config_nodedir}` : `nothing in ${dirname(dirname(process.execPath))}/include/node`}) and could not ${url ? `download ${url}` : 'get them'}: ${said}. Install them (Node from nodejs.org or the distribution's nodejs package ships include/node; \`node-gyp install\` downloads them where the network allows; npm_config_nodedir points at an unpacked copy), then run \`npm rebuild\` in the Rampart directory.`);
}
fail(`Building the original_dst addon (SO_ORIGINAL_DST for transparent capture) with node-gyp rebuild failed: ${said}. ${FIX}`);
