import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';

export interface ApiCluster {
  url: string;
  grpcAddress: string;
  processes: number;
  stop(): Promise<void>;
}

interface Ready {
  ready: true;
  url: string;
  grpcAddress: string;
}

/**
 * Runs the api role in `processes` Node processes sharing its HTTP and gRPC ports (node:cluster: the
 * primary accepts and hands connections round-robin), so the API uses every core (SPEC 16). Each
 * process is the ordinary api entry point; this one process is the primary and runs no API itself.
 * `env` is the environment of the API processes (every setting, MIGRATE_ON_START=false: the caller
 * migrates once, first). Resolves once every process answers.
 */
export async function startApiCluster(env: NodeJS.ProcessEnv, processes: number): Promise<ApiCluster> {
  // The same entry point the image runs (dist, plain JavaScript) or, from the sources, through tsx.
  const fromSources = import.meta.url.endsWith('.ts');
  cluster.setupPrimary({
    exec: fileURLToPath(new URL(fromSources ? './api.ts' : './api.js', import.meta.url)),
    execArgv: fromSources ? ['--import', 'tsx'] : [],
  });
  const workers: Worker[] = [];
  const ready = await Promise.all(
    Array.from({ length: processes }, () => {
      const worker = cluster.fork({ ...env, MIGRATE_ON_START: 'false' });
      workers.push(worker);
      return new Promise<Ready>((resolve, reject) => {
        worker.on('message', (m: Ready) => m?.ready && resolve(m));
        worker.once('exit', (code, signal) =>
          reject(new Error(`an API process exited while starting (${signal ?? code})`)),
        );
      });
    }),
  ).catch(async (err: unknown) => {
    await stopAll(workers);
    throw err;
  });
  return { url: ready[0].url, grpcAddress: ready[0].grpcAddress, processes, stop: () => stopAll(workers) };
}

/** SIGTERM to every process (each stops gracefully, see main()), then waits for them to exit. */
async function stopAll(workers: Worker[]): Promise<void> {
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.isDead()) return resolve();
          w.once('exit', () => resolve());
          w.process.kill('SIGTERM');
        }),
    ),
  );
}
