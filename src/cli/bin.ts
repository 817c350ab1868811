import { main } from './main.ts';

main(process.argv).catch((err: unknown) => {
  process.stderr.write(`rampart: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(2);
});
