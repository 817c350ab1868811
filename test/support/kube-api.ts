import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';

/**
 * A Kubernetes API server of the tests' own: no real one can be installed here. It implements exactly the API
 * conventions Rampart's Kubernetes source relies on, with the real wire format (checked by Debian's kubectl in
 * kube-api.test.ts):
 *
 * - discovery (`/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>`, `/version`), legacy form;
 * - per kind: list (`kind: <Kind>List`, `metadata.resourceVersion`), get, create (409 when it exists), update
 *   (PUT, 409 on a stale `metadata.resourceVersion`), delete, JSON merge patch (strategic merge patch of built-in
 *   kinds is taken as a merge patch: lists are replaced), the `status` subresource (PUT / PATCH changing status
 *   only), all namespaces (`/api/v1/pods`) or one (`/api/v1/namespaces/NS/pods`), label selectors of the
 *   `k=v[,k=v]` form;
 * - watch (`?watch=true&resourceVersion=N[&allowWatchBookmarks=true]`): ADDED / MODIFIED / DELETED events after N as
 *   newline-delimited JSON, BOOKMARK events with the latest resourceVersion on request (`bookmark()`) and every
 *   `bookmarkEveryMs`, and an ERROR event with a 410 Status when N is older than the retained history (`compact()`);
 * - one global resourceVersion counter, as etcd's revision;
 * - bearer tokens: 401 without a known one, 403 when the token's user may not do the verb on the resource;
 * - TokenReview (`POST /apis/authentication.k8s.io/v1/tokenreviews`) for tokens the test registers (`issueToken`).
 */

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string>; creationTimestamp?: string; generation?: number; [k: string]: unknown };
  [k: string]: unknown;
}

interface Kind {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
  readonly status: boolean;
  readonly shortNames?: readonly string[];
}

/** The kinds served. Istio's security kinds in v1 and v1beta1 (one storage, as a CRD with two served versions). */
export const KINDS: readonly Kind[] = [
  { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false, status: true, shortNames: ['ns'] },
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true, status: true, shortNames: ['po'] },
  { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true, status: true, shortNames: ['svc'] },
  { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true, status: false, shortNames: ['cm'] },
  { group: '', version: 'v1', plural: 'events', kind: 'Event', namespaced: true, status: false, shortNames: ['ev'] },
  { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true, status: false },
  ...['v1', 'v1beta1'].flatMap((version): Kind[] => [
    { group: 'security.istio.io', version, plural: 'peerauthentications', kind: 'PeerAuthentication', namespaced: true, status: true, shortNames: ['pa'] },
    { group: 'security.istio.io', version, plural: 'requestauthentications', kind: 'RequestAuthentication', namespaced: true, status: true, shortNames: ['ra'] },
    { group: 'security.istio.io', version, plural: 'authorizationpolicies', kind: 'AuthorizationPolicy', namespaced: true, status: true, shortNames: ['ap'] },
  ]),
];

/** What the control plane's Kubernetes source may do: deploy/kubernetes/control-plane.yaml's ClusterRole. */
export const CONTROL_PLANE_PERMISSIONS: readonly string[] = [
  ...['pods', 'services', 'configmaps', 'endpointslices'].flatMap((k) => [`list ${k}`, `watch ${k}`]),
  ...['peerauthentications', 'requestauthentications', 'authorizationpolicies'].flatMap((k) => [`list ${k}`, `watch ${k}`, `patch ${k}/status`]),
  'create events', 'create tokenreviews',
];

export interface KubeUser {
  readonly username: string;
  /** `verb resource` pairs allowed (`list pods`, `watch authorizationpolicies`, `create tokenreviews`, `*`). */
  readonly allow: readonly string[];
}

interface Stored {
  readonly key: string;
  readonly storage: string;
  object: KubeObject;
}

interface WatchEvent {
  readonly rv: number;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly storage: string;
  readonly object: KubeObject;
}

interface Watcher {
  readonly storage: string;
  readonly namespace: string | undefined;
  readonly selector: Selector;
  readonly kind: Kind;
  readonly res: http.ServerResponse;
  readonly bookmarks: boolean;
}

type Selector = (labels: Record<string, string> | undefined) => boolean;

/** The storage a kind's objects live in: one per group and plural (v1 and v1beta1 share it). */
const storageOf = (k: Kind): string => `${k.group}/${k.plural}`;

/**
 * A self-signed serving certificate for 127.0.0.1 (openssl, as a cluster's CA would issue one): client-go sends
 * bearer tokens only over TLS.
 */
function servingCertificate(): { key: string; cert: string } {
  const d = mkdtempSync(join(tmpdir(), 'rampart-kube-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=kube-apiserver',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-addext', 'basicConstraints=critical,CA:TRUE', '-keyout', join(d, 'key.pem'), '-out', join(d, 'cert.pem')], { stdio: 'ignore' });
    return { key: readFileSync(join(d, 'key.pem'), 'utf8'), cert: readFileSync(join(d, 'cert.pem'), 'utf8') };
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
}

export class KubeApiServer {
  readonly #server: https.Server;
  /** The serving certificate (PEM): a kubeconfig's certificate-authority-data, a client's CA. */
  readonly caPem: string;
  readonly #objects = new Map<string, Stored>();
  readonly #history: WatchEvent[] = [];
  /** Events at or below this resourceVersion are forgotten: a watch from an older one gets 410 Gone. */
  #compactedTo = 0;
  #rv = 0;
  #uid = 0;
  readonly #users = new Map<string, KubeUser>();
  readonly #watchers = new Set<Watcher>();
  /** Service-account tokens for TokenReview: token → who it names, its audiences, until when. */
  readonly #saTokens = new Map<string, { namespace: string; serviceAccount: string; podName?: string; audiences: readonly string[]; expiresAt: number }>();
  #bookmarkTimer: NodeJS.Timeout | undefined;
  /** Requests as they came (method and path), for tests that check what a client asked. */
  readonly requests: string[] = [];

  constructor(options: { bookmarkEveryMs?: number } = {}) {
    const tls = servingCertificate();
    this.caPem = tls.cert;
    this.#server = https.createServer({ key: tls.key, cert: tls.cert }, (req, res) => void this.#handle(req, res));
    if (options.bookmarkEveryMs !== undefined) {
      this.#bookmarkTimer = setInterval(() => this.bookmark(), options.bookmarkEveryMs);
      this.#bookmarkTimer.unref();
    }
  }

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', () => r()));
    return this.url;
  }

  get url(): string {
    return `https://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  get resourceVersion(): number {
    return this.#rv;
  }

  async close(): Promise<void> {
    clearInterval(this.#bookmarkTimer);
    for (const w of this.#watchers) w.res.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  addUser(token: string, user: KubeUser): void {
    this.#users.set(token, user);
  }

  /** A kubeconfig for this server (its CA, the token as the user), as kubectl and @kubernetes/client-node read it. */
  kubeconfig(token: string, namespace = 'default'): string {
    return `apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "${this.url}", certificate-authority-data: "${Buffer.from(this.caPem).toString('base64')}"}}]
users: [{name: user, user: {token: "${token}"}}]
contexts: [{name: test, context: {cluster: test, user: user, namespace: ${namespace}}}]
current-context: test
`;
  }

  /** A projected service-account token TokenReview will accept (for `audiences`, until `expiresAt` ms). */
  issueToken(token: string, who: { namespace: string; serviceAccount: string; podName?: string; audiences: readonly string[]; expiresAt: number }): void {
    this.#saTokens.set(token, who);
  }

  /** Forgets the watch history up to now: a watch from an older resourceVersion gets 410 Gone. */
  compact(): void {
    this.#compactedTo = this.#rv;
    this.#history.length = 0;
  }

  /** Ends every open watch (as an API server restart or a load balancer would). */
  dropWatches(): void {
    for (const w of this.#watchers) w.res.destroy();
    this.#watchers.clear();
  }

  /** A BOOKMARK event with the current resourceVersion to every watch that asked for bookmarks. */
  bookmark(): void {
    for (const w of this.#watchers) {
      if (!w.bookmarks) continue;
      const apiVersion = w.kind.group === '' ? w.kind.version : `${w.kind.group}/${w.kind.version}`;
      w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { apiVersion, kind: w.kind.kind, metadata: { resourceVersion: String(this.#rv) } } })}\n`);
    }
  }

  /** Objects of a kind, as stored (tests read them to check status conditions and events). */
  objects(plural: string, namespace?: string): KubeObject[] {
    return [...this.#objects.values()].filter((s) => s.storage.endsWith(`/${plural}`) && (namespace === undefined || s.object.metadata.namespace === namespace)).map((s) => structuredClone(s.object));
  }

  /** Writes an object directly (the test's own changes, as a controller of the cluster would make them). */
  put(obj: KubeObject): KubeObject {
    const kind = KINDS.find((k) => k.kind === obj.kind && (k.group === '' ? k.version : `${k.group}/${k.version}`) === obj.apiVersion);
    if (kind === undefined) throw new Error(`unknown kind ${obj.apiVersion} ${obj.kind}`);
    const key = this.#key(kind, obj.metadata.namespace, obj.metadata.name);
    const prev = this.#objects.get(key);
    return this.#store(kind, key, structuredClone(obj), prev === undefined ? 'ADDED' : 'MODIFIED', prev?.object);
  }

  remove(plural: string, namespace: string | undefined, name: string): void {
    const kind = KINDS.find((k) => k.plural === plural)!;
    const key = this.#key(kind, namespace, name);
    const prev = this.#objects.get(key);
    if (prev !== undefined) this.#delete(kind, key, prev);
  }

  #key(kind: Kind, namespace: string | undefined, name: string): string {
    return `${storageOf(kind)}|${kind.namespaced ? namespace ?? '' : ''}|${name}`;
  }

  #store(kind: Kind, key: string, obj: KubeObject, type: 'ADDED' | 'MODIFIED', prev: KubeObject | undefined): KubeObject {
    const rv = ++this.#rv;
    obj.metadata.resourceVersion = String(rv);
    obj.metadata.uid = prev?.metadata.uid ?? `uid-${++this.#uid}`;
    obj.metadata.creationTimestamp = prev?.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const specChanged = prev === undefined || JSON.stringify({ ...prev, metadata: undefined, status: undefined }) !== JSON.stringify({ ...obj, metadata: undefined, status: undefined });
    obj.metadata.generation = (prev?.metadata.generation ?? 0) + (specChanged ? 1 : 0);
    if (!kind.namespaced) delete obj.metadata.namespace;
    this.#objects.set(key, { key, storage: storageOf(kind), object: obj });
    this.#emit({ rv, type, storage: storageOf(kind), object: obj });
    return obj;
  }

  #delete(kind: Kind, key: string, prev: Stored): KubeObject {
    this.#objects.delete(key);
    const rv = ++this.#rv;
    const obj = { ...prev.object, metadata: { ...prev.object.metadata, resourceVersion: String(rv) } };
    this.#emit({ rv, type: 'DELETED', storage: storageOf(kind), object: obj });
    return obj;
  }

  #emit(e: WatchEvent): void {
    this.#history.push(e);
    for (const w of this.#watchers) this.#send(w, e);
  }

  #send(w: Watcher, e: WatchEvent): void {
    if (e.storage !== w.storage) return;
    if (w.namespace !== undefined && e.object.metadata.namespace !== w.namespace) return;
    if (!w.selector(e.object.metadata.labels)) return;
    w.res.write(`${JSON.stringify({ type: e.type, object: asVersion(e.object, w.kind) })}\n`);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://kube');
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    const send = (code: number, body: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    const status = (code: number, reason: string, message: string): void => send(code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
    const auth = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    const user = auth === null ? undefined : this.#users.get(auth[1]!);
    if (user === undefined) return status(401, 'Unauthorized', 'Unauthorized');
    const body = await readBody(req);

    // Discovery.
    const p = url.pathname.replace(/\/$/, '');
    if (p === '/version') return send(200, { major: '1', minor: '32', gitVersion: 'v1.32.0-rampart-test', platform: 'linux/amd64' });
    if (p === '/api') return send(200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] });
    if (p === '/apis') {
      const groups = [...new Set(KINDS.filter((k) => k.group !== '').map((k) => k.group))].map((g) => {
        const versions = [...new Set(KINDS.filter((k) => k.group === g).map((k) => k.version))].map((v) => ({ groupVersion: `${g}/${v}`, version: v }));
        return { name: g, versions, preferredVersion: versions[0] };
      });
      groups.push({ name: 'authentication.k8s.io', versions: [{ groupVersion: 'authentication.k8s.io/v1', version: 'v1' }], preferredVersion: { groupVersion: 'authentication.k8s.io/v1', version: 'v1' } });
      return send(200, { kind: 'APIGroupList', apiVersion: 'v1', groups });
    }
    const gv = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))$/.exec(p);
    if (gv !== null) {
      const [group, version] = gv[1] !== undefined ? ['', 'v1'] : [gv[2]!, gv[3]!];
      const kinds = KINDS.filter((k) => k.group === group && k.version === version);
      const resources = kinds.flatMap((k) => [
        { name: k.plural, singularName: k.kind.toLowerCase(), namespaced: k.namespaced, kind: k.kind, verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'], ...(k.shortNames === undefined ? {} : { shortNames: k.shortNames }) },
        ...(k.status ? [{ name: `${k.plural}/status`, singularName: '', namespaced: k.namespaced, kind: k.kind, verbs: ['get', 'patch', 'update'] }] : []),
      ]);
      if (group === 'authentication.k8s.io' && version === 'v1') resources.push({ name: 'tokenreviews', singularName: 'tokenreview', namespaced: false, kind: 'TokenReview', verbs: ['create'] });
      if (resources.length === 0) return status(404, 'NotFound', 'the server could not find the requested resource');
      return send(200, { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group === '' ? 'v1' : `${group}/${version}`, resources });
    }

    // TokenReview.
    if (p === '/apis/authentication.k8s.io/v1/tokenreviews' && req.method === 'POST') {
      if (!allowed(user, 'create', 'tokenreviews')) return status(403, 'Forbidden', `tokenreviews.authentication.k8s.io is forbidden: User "${user.username}" cannot create resource "tokenreviews"`);
      const review = JSON.parse(body) as { spec?: { token?: string; audiences?: string[] } };
      const t = this.#saTokens.get(review.spec?.token ?? '');
      const wanted = review.spec?.audiences ?? [];
      const ok = t !== undefined && t.expiresAt > Date.now() && (wanted.length === 0 || wanted.some((a) => t.audiences.includes(a)));
      return send(201, {
        kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec: review.spec ?? {},
        status: ok
          ? { authenticated: true, user: { username: `system:serviceaccount:${t.namespace}:${t.serviceAccount}`, uid: `sa-${t.namespace}-${t.serviceAccount}`, groups: ['system:serviceaccounts', `system:serviceaccounts:${t.namespace}`, 'system:authenticated'], ...(t.podName === undefined ? {} : { extra: { 'authentication.kubernetes.io/pod-name': [t.podName] } }) }, audiences: wanted.length === 0 ? t.audiences : wanted.filter((a) => t.audiences.includes(a)) }
          : { user: {}, error: t === undefined ? 'invalid bearer token' : t.expiresAt <= Date.now() ? 'token has expired' : 'token audiences is invalid for the target audiences' },
      });
    }

    // Resources: /api/v1[/namespaces/NS]/PLURAL[/NAME[/status]] or /apis/G/V[/namespaces/NS]/PLURAL[/NAME[/status]].
    const m = /^\/(?:api\/v1|apis\/([^/]+)\/([^/]+))(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?(?:\/(status))?$/.exec(p);
    const group = m?.[1] ?? '';
    const version = m?.[2] ?? 'v1';
    let namespace = m?.[3];
    let plural = m?.[4];
    let name = m?.[5];
    let sub = m?.[6];
    // `/api/v1/namespaces/NAME` is the namespace object itself (the pattern reads it that way by backtracking);
    // `/api/v1/namespaces/NAME/status` is read as a plural "status" in namespace NAME: put right here.
    if (m !== null && group === '' && namespace !== undefined && plural !== undefined && name === undefined && !KINDS.some((k) => k.plural === plural && k.namespaced)) {
      // `/api/v1/namespaces/NAME/status`-like paths are not served; a bare `/api/v1/namespaces/NAME` is.
      [plural, name, namespace, sub] = ['namespaces', namespace, undefined, plural === 'status' ? 'status' : undefined];
    }
    const kind = KINDS.find((k) => k.group === group && k.version === version && k.plural === plural);
    if (m === null || kind === undefined) return status(404, 'NotFound', 'the server could not find the requested resource');
    const qualified = kind.group === '' ? kind.plural : `${kind.plural}.${kind.group}`;
    const verb = req.method === 'GET' ? (name !== undefined ? 'get' : url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1' ? 'watch' : 'list')
      : req.method === 'POST' ? 'create' : req.method === 'PUT' ? 'update' : req.method === 'PATCH' ? 'patch' : req.method === 'DELETE' ? 'delete' : 'unknown';
    const resourceName = sub === undefined ? kind.plural : `${kind.plural}/status`;
    if (!allowed(user, verb, resourceName)) {
      return status(403, 'Forbidden', `${qualified} is forbidden: User "${user.username}" cannot ${verb} resource "${resourceName}" in API group "${kind.group}"${namespace === undefined ? ' at the cluster scope' : ` in the namespace "${namespace}"`}`);
    }
    const selector = parseSelector(url.searchParams.get('labelSelector'));
    const notFound = (): void => status(404, 'NotFound', `${qualified} "${name ?? ''}" not found`);

    if (verb === 'list' || verb === 'watch') {
      if (verb === 'watch') return this.#watch(kind, namespace, selector, url, res);
      const items = [...this.#objects.values()]
        .filter((s) => s.storage === storageOf(kind) && (namespace === undefined || s.object.metadata.namespace === namespace) && selector(s.object.metadata.labels))
        .map((s) => asVersion(s.object, kind))
        .sort((a, b) => `${a.metadata.namespace ?? ''}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace ?? ''}/${b.metadata.name}`));
      return send(200, { kind: `${kind.kind}List`, apiVersion: apiVersionOf(kind), metadata: { resourceVersion: String(this.#rv) }, items });
    }
    if (verb === 'create') {
      const obj = JSON.parse(body) as KubeObject;
      // generateName: the API server completes the name with five random characters.
      const gen = (obj.metadata as { generateName?: string } | undefined)?.generateName;
      if ((obj.metadata?.name === undefined || obj.metadata.name === '') && gen !== undefined) obj.metadata = { ...obj.metadata, name: `${gen}${Math.random().toString(36).slice(2, 7)}` };
      const ns = kind.namespaced ? obj.metadata?.namespace ?? namespace ?? 'default' : undefined;
      if (obj.metadata?.name === undefined || obj.metadata.name === '') return status(422, 'Invalid', `${kind.kind} "" is invalid: metadata.name: Required value: name is required`);
      const key = this.#key(kind, ns, obj.metadata.name);
      if (this.#objects.has(key)) return status(409, 'AlreadyExists', `${qualified} "${obj.metadata.name}" already exists`);
      const stored = this.#store(kind, key, { ...obj, apiVersion: apiVersionOf(kind), kind: kind.kind, metadata: { ...obj.metadata, ...(ns === undefined ? {} : { namespace: ns }) } }, 'ADDED', undefined);
      return send(201, asVersion(stored, kind));
    }
    const key = this.#key(kind, namespace, name!);
    const current = this.#objects.get(key);
    if (current === undefined) return notFound();
    if (verb === 'get') return send(200, asVersion(current.object, kind));
    if (verb === 'delete') return send(200, asVersion(this.#delete(kind, key, current), kind));
    let next: KubeObject;
    if (verb === 'update') {
      next = JSON.parse(body) as KubeObject;
      const rv = next.metadata?.resourceVersion;
      if (rv !== undefined && rv !== '' && rv !== current.object.metadata.resourceVersion) {
        return status(409, 'Conflict', `Operation cannot be fulfilled on ${qualified} "${name!}": the object has been modified; please apply your changes to the latest version and try again`);
      }
    } else {
      const type = req.headers['content-type'] ?? '';
      if (!/merge-patch\+json|strategic-merge-patch\+json/.test(type)) return status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got ${type})`);
      next = mergePatch(structuredClone(current.object), JSON.parse(body)) as KubeObject;
    }
    // The status subresource changes status only; the main resource leaves status alone (as for CRDs with it).
    next = sub === 'status'
      ? { ...current.object, status: next['status'] }
      : { ...next, apiVersion: apiVersionOf(kind), kind: kind.kind, ...(kind.status ? { status: current.object['status'] } : {}), metadata: { ...next.metadata, name: name!, ...(namespace === undefined ? {} : { namespace }) } };
    if (next['status'] === undefined) delete next['status'];
    return send(200, asVersion(this.#store(kind, key, structuredClone(next), 'MODIFIED', current.object), kind));
  }

  #watch(kind: Kind, namespace: string | undefined, selector: Selector, url: URL, res: http.ServerResponse): void {
    const from = Number(url.searchParams.get('resourceVersion') ?? '0');
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    // The API server answers a watch's headers at once; events follow as they happen.
    res.flushHeaders();
    const w: Watcher = { storage: storageOf(kind), namespace, selector, kind, res, bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true' };
    if (from > 0 && from < this.#compactedTo) {
      // What the API server does for a version etcd has compacted away: an ERROR event, then the end of the watch.
      res.end(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${from} (${this.#compactedTo})`, reason: 'Expired', code: 410 } })}\n`);
      return;
    }
    if (from === 0) {
      // No version: the current objects as ADDED events first, as the API server does.
      for (const s of this.#objects.values()) this.#send(w, { rv: Number(s.object.metadata.resourceVersion), type: 'ADDED', storage: s.storage, object: s.object });
    } else {
      for (const e of this.#history) if (e.rv > from) this.#send(w, e);
    }
    this.#watchers.add(w);
    const timeout = Number(url.searchParams.get('timeoutSeconds') ?? '0');
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    res.once('close', () => {
      clearTimeout(timer);
      this.#watchers.delete(w);
    });
  }
}

function apiVersionOf(k: Kind): string {
  return k.group === '' ? k.version : `${k.group}/${k.version}`;
}

/** An object as served at a kind's version (v1 and v1beta1 of Istio's kinds differ in apiVersion only). */
function asVersion(o: KubeObject, k: Kind): KubeObject {
  return { ...structuredClone(o), apiVersion: apiVersionOf(k) };
}

function allowed(u: KubeUser, verb: string, resource: string): boolean {
  return u.allow.includes('*') || u.allow.includes(`${verb} ${resource}`) || u.allow.includes(`* ${resource}`);
}

function parseSelector(text: string | null): Selector {
  if (text === null || text === '') return () => true;
  const terms = text.split(',').map((t) => t.split('=').map((x) => x.trim()) as [string, string]);
  return (labels) => terms.every(([k, v]) => labels?.[k] === v);
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let b = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (b += c));
    req.on('end', () => resolve(b));
  });
}
