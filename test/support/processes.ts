import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Runs a role of the service as its own Node process (`src/main/<role>.ts`) with the given env. */
export function spawnRole(
  role: 'worker' | 'api' | 'scheduler' | 'webhooks',
  env: Record<string, string>,
): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', `src/main/${role}.ts`], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

/** Waits for a process to exit; resolves with its signal or code. */
export function exited(child: ChildProcess, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null)
      return resolve(String(child.signalCode ?? child.exitCode));
    const timer = setTimeout(() => reject(new Error('process did not exit in time')), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(String(signal ?? code));
    });
  });
}

/**
 * The scheduling class of each thread of a process (Linux: field 41 of /proc/<pid>/task/<tid>/stat),
 * by name: 'other' (SCHED_OTHER), 'idle' (SCHED_IDLE), or the policy's number.
 */
export function schedulingClasses(pid: number): string[] {
  const names: Record<string, string> = { '0': 'other', '5': 'idle' };
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    // Fields after the command (which may hold spaces) start at field 3.
    const policy = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[41 - 3];
    return names[policy] ?? policy;
  });
}
