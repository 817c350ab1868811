/**
 * Trust domain migration (pilot/pkg/security/trustdomain/bundle.go): principals in policies name the local trust
 * domain, its aliases or the literal `cluster.local`, and are widened to every domain of the bundle.
 */
export class TrustDomainBundle {
  readonly domains: readonly string[];

  constructor(trustDomain: string, aliases: readonly string[]) {
    this.domains = [trustDomain, ...aliases];
  }

  /** Rewrites `td/ns/x/sa/y` values into one value per trust domain of the bundle; other values stay as written. */
  replaceAliases(principals: readonly string[]): string[] {
    const out: string[] = [];
    for (const p of principals) {
      const parts = p.split('/');
      if (parts.length !== 5 || parts[0] === '*') {
        out.push(p);
        continue;
      }
      const td = parts[0]!;
      if (!this.domains.some((d) => looseMatch(td, d)) && td !== 'cluster.local') {
        out.push(p);
        continue;
      }
      const expanded: string[] = [];
      for (const d of this.domains) {
        const np = suffixMatch(d, td) ? p : [d, ...parts.slice(1)].join('/');
        if (!expanded.includes(np)) expanded.push(np);
      }
      out.push(...expanded);
    }
    return out;
  }

  /** `trustDomains` values naming a bundle member stand for every member. */
  expandDomains(values: readonly string[]): string[] {
    const out: string[] = [];
    for (const v of values) {
      const add = this.domains.includes(v) ? this.domains : [v];
      for (const a of add) if (!out.includes(a)) out.push(a);
    }
    return out;
  }
}

function prefixMatch(a: string, pattern: string): boolean {
  return pattern.endsWith('*') && a.startsWith(pattern.slice(0, -1));
}

function suffixMatch(a: string, pattern: string): boolean {
  return pattern.startsWith('*') && a.endsWith(pattern.slice(1));
}

function looseMatch(a: string, s: string): boolean {
  return a === s || s === '*' || prefixMatch(a, s) || prefixMatch(s, a) || suffixMatch(a, s) || suffixMatch(s, a);
}
