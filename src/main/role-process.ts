import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface RoleProcess {
  pid: number;
  stop(): Promise<void>;
}

/**
 * Runs one role's entry point (src/main/<entry>.ts, or its build) as a child process with `env`, and
 * resolves once it says it is ready (main() sends { ready }). Stopped with SIGTERM, then waited for.
 */
export async function startRoleProcess(entry: 'webhooks', env: NodeJS.ProcessEnv): Promise<RoleProcess> {
  // The same entry point the image runs (dist, plain JavaScript) or, from the sources, through tsx.
  const fromSources = import.meta.url.endsWith('.ts');
  const child: ChildProcess = fork(fileURLToPath(new URL(`./${entry}.${fromSources ? 'ts' : 'js'}`, import.meta.url)), {
    env,
    execArgv: fromSources ? ['--import', 'tsx'] : [],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.on('message', (m: { ready?: boolean }) => m?.ready && resolve());
    child.once('exit', (code, signal) =>
      reject(new Error(`the ${entry} process exited while starting (${signal ?? code})`)),
    );
  });
  return {
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
