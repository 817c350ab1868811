import { RampartError } from '../errors.ts';
import { applyCapture, captureInstalled, removeCapture, type CaptureBackend } from '../capture/apply.ts';
import { describeCapture, parseCaptureOptions, type CaptureFlags } from '../capture/rules.ts';
import type { CommandOutput } from './check.ts';

export interface CaptureApplyCliOptions extends CaptureFlags {
  readonly netns?: string;
  readonly backend?: CaptureBackend;
  readonly dryRun?: boolean;
}

export interface CaptureTargetCliOptions {
  readonly netns?: string;
  readonly backend?: CaptureBackend;
}

/**
 * `rampart capture apply`: Istio's istio-init rules in this (or --netns) network namespace. One line says which
 * backend took them and what is captured; --dry-run prints the rules instead (a `#` line first, so the output is
 * still valid nft -f or iptables-restore input). Exit 0, or 1 with `rampart capture: …`.
 */
export async function runCaptureApply(o: CaptureApplyCliOptions): Promise<CommandOutput> {
  return guarded(async () => {
    const options = parseCaptureOptions(o);
    const applied = await applyCapture(options, { backend: o.backend, netns: o.netns, dryRun: o.dryRun === true });
    if (o.dryRun === true) {
      return `# dry run, nothing applied: the ${applied.backend} rules${where(o)}; ${describeCapture(options)}\n${applied.rules}`;
    }
    return `capture applied with ${applied.backend}${where(o)}: ${describeCapture(options)}\n`;
  });
}

/** `rampart capture remove`: what apply added, for one backend or both; nothing there is not an error. */
export async function runCaptureRemove(o: CaptureTargetCliOptions): Promise<CommandOutput> {
  return guarded(async () => {
    const { removed } = await removeCapture({ backend: o.backend, netns: o.netns });
    const which = o.backend === undefined ? '' : ` ${o.backend}`;
    return removed ? `capture removed: the${which} capture rules${where(o)} are gone\n` : `no${which} capture rules to remove${where(o)}\n`;
  });
}

/** `rampart capture show`: the installed rules as nft or iptables-save lists them, or a line saying there are none. */
export async function runCaptureShow(o: { readonly netns?: string }): Promise<CommandOutput> {
  return guarded(async () => {
    const installed = await captureInstalled({ netns: o.netns });
    if (installed.length === 0) return `no capture rules installed${where(o)}\n`;
    return installed.map((i) => `# capture rules installed with ${i.backend}${where(o)}\n${i.rules.endsWith('\n') ? i.rules : `${i.rules}\n`}`).join('\n');
  });
}

function where(o: { readonly netns?: string }): string {
  return o.netns === undefined ? '' : ` in netns ${o.netns}`;
}

async function guarded(body: () => Promise<string>): Promise<CommandOutput> {
  try {
    return { exitCode: 0, stdout: await body(), stderr: '' };
  } catch (err) {
    if (err instanceof RampartError) return { exitCode: 1, stdout: '', stderr: `rampart capture: ${err.message}\n` };
    throw err;
  }
}
