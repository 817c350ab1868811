/**
 * Loading and compiling a mesh: YAML text → validated resources → engine → every policy compiled (HTTP and TCP
 * forms) → every rule's matchers built → every workload's view built. Each phase is timed once (a cold start is
 * what a restart or a new snapshot costs); generating the text is timed for information only. The baseline,
 * measured in the same run, is js-yaml parsing the same stream and nothing else: the floor under `loadResources`.
 *
 * The engine compiles lazily: `compiledPolicy` decides each rule's shape, and the matchers are generated on a rule's
 * first evaluation (since 17d3971). "Compiling every policy" here means both, so the matchers are forced by
 * evaluating every rule once against the benchmark request; the eager part alone is reported as well.
 */
import { loadAll } from 'js-yaml';
import { PolicyEngine, type WorkloadPolicy } from '../src/policy/engine.ts';
import { DEFAULT_MESH } from '../src/resources/mesh-config.ts';
import { formatDiagnostic } from '../src/resources/diagnostic.ts';
import { loadResources } from '../src/resources/load.ts';
import type { AuthorizationPolicy } from '../src/resources/types.ts';
import { APPLICABLE_POLICIES, BENCH_WORKLOAD, benchRequest, generateMesh, type FixtureOptions, type GeneratedMesh } from './fixtures.ts';
import { timeOnce } from './timing.ts';

export interface LoadPhases {
  readonly policies: number;
  readonly namespaces: number;
  readonly workloads: number;
  readonly textMB: number;
  /** Not part of the target: building the benchmark's input. */
  readonly generateMs: number;
  /** js-yaml `loadAll` of the same text (baseline), when measured. */
  readonly parseOnlyMs: number | undefined;
  readonly loadResourcesMs: number;
  readonly engineMs: number;
  /** `compiledPolicy(p, false)` and `(p, true)` for every AuthorizationPolicy: the HTTP and TCP forms. */
  readonly compilePoliciesMs: number;
  /** Every rule of both forms evaluated once, which builds matchers the engine defers to first use. */
  readonly buildMatchersMs: number;
  /** Rules whose matchers were built. */
  readonly rules: number;
  /** `engine.workload(ns, labels)` for every workload of the mesh (selection, mTLS, layers; compiled forms cached). */
  readonly workloadViewsMs: number;
  /** loadResources + engine + compiledPolicy of every policy: what the engine does before any request. */
  readonly loadAndEagerCompileMs: number;
  /** loadAndEagerCompileMs + every rule's matchers: every policy fully compiled. */
  readonly loadAndCompileMs: number;
  /** loadAndCompileMs + every workload's view: ready to decide for any workload. */
  readonly totalMs: number;
  readonly warnings: number;
  /** V8 heap after the phases and a full GC (when --expose-gc is on). */
  readonly heapMB: number | undefined;
}

export interface LoadedMesh {
  readonly size: number;
  readonly engine: PolicyEngine;
  /** BENCH_WORKLOAD's compiled view, resolved once as a proxy would per snapshot. */
  readonly workloadPolicy: WorkloadPolicy;
  readonly phases: LoadPhases;
}

function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc !== undefined) gc();
}

function heapMB(): number | undefined {
  if ((globalThis as { gc?: unknown }).gc === undefined) return undefined;
  collectGarbage();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

/** Generates, loads and compiles a mesh of `size` AuthorizationPolicies, timing each phase. */
export function loadMesh(size: number, fixtures: FixtureOptions, opts: { parseBaseline: boolean }): LoadedMesh {
  const gen = timeOnce(() => generateMesh(size, fixtures));
  const mesh: GeneratedMesh = gen.value;
  let parseOnlyMs: number | undefined;
  if (opts.parseBaseline) {
    collectGarbage();
    parseOnlyMs = timeOnce(() => loadAll(mesh.text)).ms;
  }
  collectGarbage();

  const load = timeOnce(() => loadResources([{ file: `mesh-${size}.yaml`, text: mesh.text }]));
  const errors = load.value.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) {
    throw new Error(`the ${size}-policy fixture does not load:\n${errors.slice(0, 5).map(formatDiagnostic).join('\n')}`);
  }
  const resources = load.value.resources;
  const engine = timeOnce(() => new PolicyEngine(resources, DEFAULT_MESH));
  const authz = resources.filter((r): r is AuthorizationPolicy => r.kind === 'AuthorizationPolicy');
  const compile = timeOnce(() => {
    for (const p of authz) {
      engine.value.compiledPolicy(p, false);
      engine.value.compiledPolicy(p, true);
    }
  });
  const probe = engine.value.prepare(benchRequest());
  const matchers = timeOnce(() => {
    let rules = 0;
    for (const p of authz) {
      for (const form of [engine.value.compiledPolicy(p, false), engine.value.compiledPolicy(p, true)]) {
        for (const rule of form.rules) {
          rule.match(probe);
          rules++;
        }
      }
    }
    return rules;
  });
  const views = timeOnce(() => {
    for (const w of mesh.workloads) engine.value.workload(w.namespace, w.labels);
  });

  // Not timed: the fixture is what it claims to be.
  if (authz.length !== size) throw new Error(`expected ${size} AuthorizationPolicies, loaded ${authz.length}`);
  const reached = new Set<AuthorizationPolicy>();
  for (const w of mesh.workloads) for (const p of engine.value.workload(w.namespace, w.labels).authorizationPolicies) reached.add(p);
  if (reached.size !== size) throw new Error(`the workload list reaches ${reached.size} of ${size} policies`);
  const wp = engine.value.workload(BENCH_WORKLOAD.namespace, BENCH_WORKLOAD.labels);
  if (wp.authorizationPolicies.length !== APPLICABLE_POLICIES) {
    throw new Error(`${wp.authorizationPolicies.length} policies apply to the benchmark workload, expected ${APPLICABLE_POLICIES}`);
  }

  const loadAndEagerCompileMs = load.ms + engine.ms + compile.ms;
  const loadAndCompileMs = loadAndEagerCompileMs + matchers.ms;
  return {
    size,
    engine: engine.value,
    workloadPolicy: wp,
    phases: {
      policies: size,
      namespaces: mesh.namespaces,
      workloads: mesh.workloads.length,
      textMB: mesh.text.length / 2 ** 20,
      generateMs: gen.ms,
      parseOnlyMs,
      loadResourcesMs: load.ms,
      engineMs: engine.ms,
      compilePoliciesMs: compile.ms,
      buildMatchersMs: matchers.ms,
      rules: matchers.value,
      workloadViewsMs: views.ms,
      loadAndEagerCompileMs,
      loadAndCompileMs,
      totalMs: loadAndCompileMs + views.ms,
      warnings: load.value.diagnostics.length,
      heapMB: heapMB(),
    },
  };
}
