// The common frame of a bench script: its error for a person (one line, exit status 2) and the main wrapper.
export class BenchError extends Error {}

/** Run `main`, turning BenchError and argument errors into one line on stderr. */
export async function runBench(name: string, usage: string, main: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await main();
  } catch (e) {
    if (e instanceof BenchError) {
      process.stderr.write(`${name}: ${e.message}\n`);
    } else if (e instanceof TypeError && (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${name}: ${e.message}\n${usage}`);
    } else {
      process.stderr.write(`${name}: internal error: ${(e as Error).stack ?? e}\n`);
    }
    process.exitCode = 2;
  }
}
