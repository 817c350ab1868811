import { Command, Option } from 'commander';
import { runCheck, type CommandOutput } from './check.ts';
import { runValidate } from './validate.ts';

function emit(out: CommandOutput): void {
  if (out.stdout !== '') process.stdout.write(out.stdout);
  if (out.stderr !== '') process.stderr.write(out.stderr);
  process.exitCode = out.exitCode;
}

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
      emit(await runValidate({ paths, ...o }));
    });

  program
    .command('check')
    .description('decide one request as Istio would, and explain why (exit 0 allowed, 1 denied, 2 bad input)')
    .requiredOption('-c, --config <paths...>', 'policy files or directories')
    .requiredOption('-r, --request <file>', 'request JSON file, or "-" for standard input')
    .option('--mesh <file>', 'MeshConfig (Istio field names); default: Istio defaults')
    .addOption(new Option('--ext-authz <answer>', 'what a CUSTOM provider answers').choices(['allow', 'deny']))
    .option('--json', 'machine-readable output')
    .action(async (o: { config: string[]; request: string; mesh?: string; extAuthz?: 'allow' | 'deny'; json?: boolean }) => {
      emit(await runCheck(o));
    });
  return program;
}

export async function main(argv: readonly string[]): Promise<void> {
  await buildProgram().parseAsync([...argv]);
}
