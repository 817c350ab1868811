import { Command, Option } from 'commander';
import type { CommandOutput } from './check.ts';
import { KEY_TYPES, type KeyType } from '../identity/key-types.ts';
import { closest } from '../resources/similar.ts';

// Each command loads its modules when it runs: `rampart cert inspect` need not load the policy engine, and
// `rampart check` need not load the certificate code.

function emit(out: CommandOutput): void {
  if (out.stdout !== '') process.stdout.write(out.stdout);
  if (out.stderr !== '') process.stderr.write(out.stderr);
  process.exitCode = out.exitCode;
}

type ProxyCliOptions = {
  mesh?: string; config?: string[]; workload: string; ca?: string; controlPlane?: string; token?: string; rootCert?: string; svidTtl?: string; host?: string; adminPort?: string; debugHeaders?: boolean;
  outboundPort?: string; upstream?: string[]; idleTimeout?: string; headersTimeout?: string; requestTimeout?: string; maxHeaderBytes?: string;
  maxHeaders?: string; maxConnections?: string; accessLog?: string; workers?: string; exitWithParent?: boolean;
  capture?: boolean; inboundCapturePort?: string; outboundCapturePort?: string; hostsFile?: string;
};

export function buildProgram(): Command {
  const program = new Command('rampart')
    .description('Zero-trust security for services: Istio security policies, decided and explained')
    .version('0.1.0')
    .showHelpAfterError();
  program.exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : 2);
  });

  program
    .command('validate')
    .description('validate Istio security resources; errors and warnings with file, line and field path')
    .argument('<paths...>', 'YAML/JSON files or directories ("-" for standard input)')
    .option('--mesh <file>', 'MeshConfig (Istio field names); default: Istio defaults')
    .option('--workloads <file>', 'known workloads ([{namespace, labels}]) for selector and coverage warnings')
    .option('--json', 'machine-readable output')
    .action(async (paths: string[], o: { mesh?: string; workloads?: string; json?: boolean }) => {
      emit(await (await import('./validate.ts')).runValidate({ paths, ...o }));
    });

  program
    .command('check')
    .description('decide one request as Istio would, and explain why (exit 0 allowed, 1 denied, 2 bad input)')
    .requiredOption('-c, --config <paths...>', 'policy files or directories')
    .requiredOption('-r, --request <file>', 'request JSON file, or "-" for standard input')
    .option('--mesh <file>', 'MeshConfig (Istio field names); default: Istio defaults')
    .addOption(new Option('--ext-authz <answer>', 'what a CUSTOM provider answers').choices(['allow', 'deny']))
    .option('--jwks <issuer=file...>', "verify that issuer's tokens with a local JWKS file instead of the rule's jwks/jwksUri")
    .option('--fetch-jwks', 'fetch jwksUri keys from the network (off by default: without --jwks or an inline jwks, a token gets 401)')
    .option('--json', 'machine-readable output')
    .action(async (o: { config: string[]; request: string; mesh?: string; extAuthz?: 'allow' | 'deny'; json?: boolean; jwks?: string[]; fetchJwks?: boolean }) => {
      emit(await (await import('./check.ts')).runCheck(o));
    });

  program
    .command('access')
    .description('who may call what: callers (service accounts, no mTLS, any JWT) against every workload port of a mesh directory')
    .argument('<dir>', 'mesh directory (mesh.yaml beside the policies)')
    .option('--json', 'machine-readable output')
    .action(async (dir: string, o: { json?: boolean }) => {
      emit(await (await import('./access.ts')).runAccess({ dir, ...o }));
    });

  program
    .command('test')
    .description('run policy test suites (docs/policy-testing.md): exit 0 all pass, 1 a case fails (with --diff: a decision changes), 2 bad input')
    .argument('<suites...>', 'suite files (YAML): requests with their expected decisions')
    .option('-c, --config <paths...>', 'policy files or directories, or one mesh directory (mesh.yaml beside the policies)')
    .option('--mesh <file>', 'MeshConfig for policy files (Istio field names); a mesh directory has its own')
    .option('--diff <old-and-new...>', 'run the cases against two versions of the policies (two paths) and list every decision that changes')
    .option('--jwks <issuer=file...>', "that issuer's keys, from a JWKS file (rampart test never fetches a jwksUri)")
    .option('--junit <file>', 'also write the results as JUnit XML')
    .option('--json', 'machine-readable output')
    .action(async (suites: string[], o: { config?: string[]; mesh?: string; diff?: string[]; jwks?: string[]; junit?: string; json?: boolean }) => {
      emit(await (await import('./test.ts')).runTest({ suites, ...o }));
    });

  const keyTypeOption = (what: string): Option => new Option('--key-type <type>', what).choices([...KEY_TYPES]).default('ec-p256');
  const ca = program.command('ca').description('the certificate authority: roots, workload certificates, bootstrap tokens');
  ca.command('init')
    .description('create a self-signed root CA in DIR (ca-cert.pem, ca-key.pem 0600, cert-chain.pem, root-cert.pem)')
    .argument('<dir>', 'CA directory')
    .addOption(keyTypeOption('root key type'))
    .option('--ttl <duration>', 'root lifetime (e.g. 10y, 365d, 8760h)', '10y')
    .option('--trust-domain <domain>', 'trust domain (the root is named O=<domain>)', 'cluster.local')
    .option('--force', 'overwrite an existing CA')
    .action(async (dir: string, o: { keyType: KeyType; ttl: string; trustDomain: string; force?: boolean }) => {
      emit(await (await import('./ca.ts')).runCaInit({ dir, ...o }));
    });
  ca.command('issue')
    .description('issue a key and SVID for manual use: key.pem (0600), cert-chain.pem (leaf first), root-cert.pem')
    .requiredOption('--ca <dir>', 'CA directory (from "ca init", or Istio plug-in cacerts)')
    .requiredOption('-n, --namespace <ns>', 'workload namespace')
    .requiredOption('-s, --service-account <sa>', 'workload service account')
    .option('--trust-domain <domain>', 'trust domain', 'cluster.local')
    .option('--ttl <duration>', 'certificate lifetime (default 24h)')
    .option('--max-ttl <duration>', 'longest lifetime the CA grants (default 90d, as Istio)')
    .addOption(keyTypeOption('workload key type'))
    .option('-o, --out <dir>', 'output directory', '.')
    .option('--force', 'overwrite existing files')
    .action(async (o: { ca: string; namespace: string; serviceAccount: string; trustDomain: string; ttl?: string; maxTtl?: string; keyType: KeyType; out: string; force?: boolean }) => {
      emit(await (await import('./ca.ts')).runCaIssue(o));
    });
  ca.command('token')
    .description('print a single-use bootstrap token with which a workload may request its first SVID')
    .requiredOption('--ca <dir>', 'CA directory')
    .requiredOption('-n, --namespace <ns>', 'workload namespace')
    .requiredOption('-s, --service-account <sa>', 'workload service account')
    .option('--trust-domain <domain>', 'trust domain', 'cluster.local')
    .option('--ttl <duration>', 'token lifetime (at most 24h)', '15m')
    .action(async (o: { ca: string; namespace: string; serviceAccount: string; trustDomain: string; ttl: string }) => {
      emit(await (await import('./ca.ts')).runCaToken(o));
    });
  ca.command('trust')
    .description("list, add or retire trusted roots (root-cert.pem); steps 1 and 4 of a root rotation")
    .argument('<dir>', 'CA directory')
    .option('--add <files...>', 'PEM files of roots to trust')
    .option('--remove <sha256...>', 'fingerprints of roots to retire')
    .action(async (dir: string, o: { add?: string[]; remove?: string[] }) => {
      emit(await (await import('./ca.ts')).runCaTrust({ ca: dir, ...o }));
    });
  ca.command('use')
    .description("make another CA directory's signer the signer of DIR, keeping every trusted root; step 2 of a root rotation")
    .argument('<dir>', 'CA directory')
    .requiredOption('--signer <dir>', 'CA directory whose ca-cert.pem/ca-key.pem take over')
    .action(async (dir: string, o: { signer: string }) => {
      emit(await (await import('./ca.ts')).runCaUse({ ca: dir, signer: o.signer }));
    });

  program
    .command('proxy')
    .description("the sidecar of one workload: mTLS, JWT and authorization on every inbound request, as Istio's")
    .requiredOption('--workload <namespace/name>', 'which workload of the mesh this sidecar serves')
    .option('--control-plane <url>', 'https://HOST:PORT of rampart control-plane: SVIDs and configuration from it (with --token, --root-cert)')
    .option('--token <file>', 'a bootstrap token for the first SVID (rampart ca token); it names the identity')
    .option('--root-cert <file>', "the mesh's root certificates (root-cert.pem), to verify the control plane by")
    .option('--mesh <file>', 'without a control plane: the mesh file (meshConfig, workloads, services)')
    .option('-c, --config <paths...>', 'without a control plane: policy files or directories (watched; a change with errors is refused)')
    .option('--ca <dir>', 'without a control plane: a CA directory (rampart ca init) to get and renew the SVID from')
    .option('--svid-ttl <duration>', 'SVID lifetime (default: the CA default, 24h)')
    .option('--host <address>', "listen address of the inbound listeners (default: the workload's address)")
    .option('--admin-port <port>', 'admin endpoint on 127.0.0.1: /ready, /metrics, /config, /certs (0: any free port)')
    .option('--debug-headers', 'denials name request id, deciding layer and policy (as debugHeaders: true in the mesh file; off by default)')
    .option('--outbound-port <port>', "the app's HTTP proxy on 127.0.0.1 (HTTP_PROXY; absolute-form and CONNECT; 0: any free port)")
    .option('--upstream <local=host:port...>', 'a local port on 127.0.0.1 forwarding to a service, e.g. 9001=reviews.bookinfo:9080')
    .option('--idle-timeout <duration>', 'close a connection idle this long, or silent after connecting (default 60s)')
    .option('--headers-timeout <duration>', 'a request must finish its headers within this (default 10s): slow clients are cut off')
    .option('--request-timeout <duration>', 'a whole request, body included (default 300s)')
    .option('--max-header-bytes <n>', 'request header size limit, answered with 431 (default 61440)')
    .option('--max-headers <n>', 'request header count limit, answered with 431 (default 100)')
    .option('--max-connections <n>', 'open connections per listener; new ones beyond it are closed (default 10000)')
    .option('--access-log <where>', 'stdout (default: a JSON line per request or connection) or off')
    .option('--workers <n>', 'processes sharing the listeners (node:cluster), each with its own SVID (default 1)')
    .option('--exit-with-parent', 'stop, as on SIGTERM, when the process that started this one exits (rampart up sets it)')
    .option('--capture', "serve the traffic rampart capture sends (the app keeps its own ports, names services as it always did); run in the workload's network namespace as the proxy gid or uid (1337)")
    .option('--inbound-capture-port <port>', 'with --capture: where inbound connections arrive (default 15006, as rampart capture)')
    .option('--outbound-capture-port <port>', 'with --capture: where the app\'s outbound connections arrive (default 15001, as rampart capture)')
    .option('--hosts-file <file>', "with --capture: keep the mesh services' names in this hosts file (e.g. /etc/netns/NAME/hosts), written in place on every registry change")
    .action(async (o: ProxyCliOptions) => {
      process.exitCode = await (await import('./proxy.ts')).runProxy(o);
    });

  program
    .command('control-plane')
    .description('hold the CA and the configuration in DIR (mesh.yaml + Istio YAML, watched); sign proxies\' CSRs and stream them their configuration over mTLS')
    .argument('[dir]', 'configuration directory: mesh.yaml and policy files (or --kubernetes)')
    .option('--kubernetes', "configuration from a Kubernetes cluster: Istio's security resources, Pods, Services and the root namespace's istio ConfigMap (list and watch)")
    .option('--kubeconfig <file>', 'with --kubernetes: the kubeconfig (default: in-cluster config in a pod, else KUBECONFIG or ~/.kube/config)')
    .option('--root-namespace <ns>', "with --kubernetes: where the istio ConfigMap (MeshConfig) lives", 'istio-system')
    .requiredOption('--ca <dir>', 'CA directory (rampart ca init); the used bootstrap tokens are kept there too')
    .option('--host <address>', 'listen address of the mTLS port', '127.0.0.1')
    .option('--port <port>', 'mTLS port for proxies (CSRs and configuration)', '15012')
    .option('--admin-port <port>', 'admin port: the console (/console/), /status (rampart status reads it), /ready', '15014')
    .option('--admin-host <address>', 'address of the admin port; beyond loopback it needs --admin-token-file', '127.0.0.1')
    .option('--admin-token-file <file>', 'a file holding the token the admin port asks for (authorization: Bearer, or the console\'s sign-in)')
    .option('--debounce <duration>', 'wait after a change before pushing', '100ms')
    .option('--svid-ttl <duration>', "lifetime of the proxies' SVIDs (default 24h)")
    .action(async (dir: string | undefined, o: { kubernetes?: boolean; kubeconfig?: string; rootNamespace: string; ca: string; host: string; port: string; adminPort: string; adminHost: string; adminTokenFile?: string; debounce: string; svidTtl?: string }) => {
      process.exitCode = await (await import('./control-plane.ts')).runControlPlane({ ...(dir === undefined ? {} : { dir }), ...o });
    });
  program
    .command('up')
    .description('the main job: a whole mesh on this machine — control plane, a sidecar per workload of DIR/mesh.yaml, the demo apps — and a live line per request')
    .argument('[dir]', 'mesh directory: mesh.yaml, Istio YAML, demo.yaml', 'examples/mesh')
    .option('--demo', 'run the scripted walk-through (mTLS or not; valid, expired, missing token), print a summary and exit')
    .option('--port <port>', "the control plane's mTLS port", '15012')
    .option('--admin-port <port>', "the control plane's admin port on 127.0.0.1: the console, status", '15014')
    .option('--svid-ttl <duration>', 'lifetime of the sidecars\' SVIDs (default 24h)')
    .option('--hosts <where>', 'netns: each workload in a network namespace of its own, its traffic captured (Linux, root); loopback: loopback addresses and HTTP proxy ports; auto (default): netns where it can', 'auto')
    .option('--netns-prefix <text>', 'prefix of the network namespaces\' names (default none: ip netns exec sleep …)')
    .action(async (dir: string, o: { demo?: boolean; port: string; adminPort: string; svidTtl?: string; hosts: string; netnsPrefix?: string }) => {
      process.exitCode = await (await import('./up.ts')).runUp({ dir, ...o });
    });
  program
    .command('inject')
    .description("add the sidecar and the capture init step to workload manifests, as istioctl kube-inject (the app's containers unchanged)")
    .requiredOption('-f, --filename <file>', 'manifests (YAML, several documents), or - for standard input')
    .option('--image <image>', 'the image of rampart-init and rampart-proxy', 'rampart:0.1.0')
    .option('--control-plane <url>', "the control plane's mTLS address", 'https://rampart-control-plane.istio-system.svc:15012')
    .action(async (o: { filename: string; image: string; controlPlane: string }) => {
      emit(await (await import('./inject.ts')).runInject({ file: o.filename, image: o.image, controlPlane: o.controlPlane }));
    });
  program
    .command('demo-app', { hidden: true })
    .description("rampart up's echo app as a process of its own (in a workload's network namespace)")
    .requiredOption('--workload <namespace/name>', 'whose app it is')
    .requiredOption('--port <port>', 'port to listen on, every address')
    .option('--exit-with-parent', 'stop when the process that started this one exits')
    .action(async (o: { workload: string; port: string; exitWithParent?: boolean }) => {
      process.exitCode = await (await import('./demo-app.ts')).runDemoApp(o);
    });
  program
    .command('status')
    .description('the control plane\'s proxies: config version and ACK state, certificate expiry; rejected files (exit 1 if anything is out of step)')
    .option('--admin <url>', "the control plane's admin address", 'http://127.0.0.1:15014')
    .option('--admin-token-file <file>', "the admin port's token, where it is bound beyond loopback")
    .option('--json', 'machine-readable output')
    .action(async (o: { admin: string; adminTokenFile?: string; json?: boolean }) => {
      emit(await (await import('./control-plane.ts')).runStatus(o));
    });
  const jwt = program.command('jwt').description('JSON Web Tokens');
  jwt.command('decode')
    .description('show header, claims and times of a token and what would make Rampart (as Envoy) refuse it (exit 1 if anything would)')
    .argument('<token>', 'the token ("Bearer " prefix allowed), or "-" for standard input')
    .option('--jwks <file>', 'a JWKS file to check the signature with')
    .option('--json', 'machine-readable output')
    .action(async (token: string, o: { jwks?: string; json?: boolean }) => {
      emit(await (await import('./jwt.ts')).runJwtDecode({ token, ...o }));
    });

  const cert = program.command('cert').description('certificates');
  cert.command('inspect')
    .description('show SPIFFE ID, chain, validity, key, serial and fingerprint; warn on what an SVID must not have (exit 1 on warnings)')
    .argument('<file>', 'PEM file ("-" for standard input), leaf first')
    .option('--roots <file>', 'root-cert.pem to verify the chain against (default: root-cert.pem beside the file)')
    .option('--trust-domain <domain>', "accepted trust domain (default: the leaf's)")
    .option('--json', 'machine-readable output')
    .action(async (file: string, o: { roots?: string; trustDomain?: string; json?: boolean }) => {
      emit(await (await import('./cert.ts')).runCertInspect({ file, ...o }));
    });

  const capture = program.command('capture').description("traffic capture: istio-init's nat rules (nft or iptables) sending a workload's TCP to its sidecar");
  const backendOption = (): Option => new Option('--backend <backend>', 'nft or iptables (default: nft where it works, else iptables)').choices(['nft', 'iptables']);
  const netnsOption = (): Option => new Option('--netns <name>', 'in this network namespace (ip netns), not the current one');
  capture.command('apply')
    .description('redirect inbound TCP to the inbound port and outbound TCP to the outbound port, the sidecar\'s own uid/gid and loopback exempt (replaces earlier rules; needs root)')
    .addOption(netnsOption())
    .addOption(backendOption())
    .option('--proxy-uid <uid>', "the sidecar's user: its connections are not captured (default 1337)")
    .option('--proxy-gid <gid>', "the sidecar's group, likewise (default 1337)")
    .option('--inbound-port <port>', 'where inbound connections go (default 15006)')
    .option('--outbound-port <port>', 'where outbound connections go (default 15001)')
    .option('--include-inbound-ports <ports>', "'*' (default) or a comma-separated list; '' captures no inbound traffic")
    .option('--exclude-inbound-ports <ports>', "with '*': ports not captured (default 15001,15006,15000,15020,15021,15090)")
    .option('--include-outbound-cidrs <cidrs>', "'*' (default) or a comma-separated list of CIDRs; '' captures no outbound traffic")
    .option('--exclude-outbound-cidrs <cidrs>', 'destinations not captured (comma-separated CIDRs)')
    .option('--exclude-outbound-ports <ports>', 'destination ports not captured (comma-separated)')
    .option('--dry-run', 'print the rules for the backend instead of applying them (no root needed)')
    .action(async (o: import('./capture.ts').CaptureApplyCliOptions) => {
      emit(await (await import('./capture.ts')).runCaptureApply(o));
    });
  capture.command('remove')
    .description('remove the rules apply added (both backends unless --backend); nothing to remove is not an error')
    .addOption(netnsOption())
    .addOption(backendOption())
    .action(async (o: import('./capture.ts').CaptureTargetCliOptions) => {
      emit(await (await import('./capture.ts')).runCaptureRemove(o));
    });
  capture.command('show')
    .description('print the installed capture rules, or say there are none')
    .addOption(netnsOption())
    .action(async (o: { netns?: string }) => {
      emit(await (await import('./capture.ts')).runCaptureShow(o));
    });
  return program;
}

export async function main(argv: readonly string[]): Promise<void> {
  const program = buildProgram();
  unknownOptionsFirst(program, argv.slice(2));
  await program.parseAsync([...argv]);
}

/**
 * Commander checks required options before unknown ones, so `rampart check --polcy p.yaml` said "-c not specified"
 * about an option that was only misspelled. A misspelled option is the actual mistake: it is reported first, with
 * commander's own "did you mean".
 */
function unknownOptionsFirst(program: Command, args: readonly string[]): void {
  let cmd = program;
  let i = 0;
  for (; i < args.length; i++) {
    const sub = cmd.commands.find((c) => c.name() === args[i] || c.aliases().includes(args[i]!));
    if (sub === undefined) break;
    cmd = sub;
  }
  const known = new Set<string>(['-h', '--help']);
  for (const c of [cmd, program]) {
    for (const o of c.options) {
      if (o.long !== undefined) known.add(o.long);
      if (o.short !== undefined) known.add(o.short);
      if (o.negate && o.long !== undefined) known.add(o.long);
    }
  }
  for (const arg of args.slice(i)) {
    if (arg === '--') return;
    if (!arg.startsWith('-') || arg.length < 2 || /^-\d/.test(arg)) continue;
    const flag = arg.startsWith('--') ? arg.split('=', 1)[0]! : arg.slice(0, 2);
    if (!known.has(flag)) {
      const hint = flag.startsWith('--') ? closest(flag, [...known].filter((k) => k.startsWith('--'))) : undefined;
      cmd.error(`error: unknown option '${flag}'${hint === undefined ? '' : `\n(Did you mean ${hint}?)`}`, { code: 'commander.unknownOption', exitCode: 2 });
    }
  }
}
