/*
 * What `npm start` leaves under its data folder (./.data, or BILLING_DATA_DIR) for the tools that
 * come after it: stack.json (while it runs: its pid and the settings its processes use, so that the
 * admin CLI finds the running stack by itself) and ports.json (the ports of the last run, tried
 * first next time so that URLs stay the same across restarts).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export function dataDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.BILLING_DATA_DIR || join(process.cwd(), '.data'));
}

export interface StackFile {
  pid: number;
  startedAt: string;
  env: Record<string, string>;
}

/** Settings of the running stack that another process (the CLI) needs to join it. */
export const STACK_ENV_KEYS = [
  'REDIS_URL',
  'DATABASE_URL',
  'REDIS_KEY_PREFIX',
  'QUEUE_PREFIX',
  'BUSINESS_TZ',
  'CONFIG_FILE',
  'ADMIN_TOKEN',
  'GATEWAY_TOKEN',
  'PAYMENT_CALLBACK_SECRET',
  'PAYMENT_GRPC_ADDR',
];

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** After a crash the file stays and its pid may be reused: is that pid still a dev stack? */
function isDevStack(pid: number): boolean {
  const cmdline = `/proc/${pid}/cmdline`;
  if (!existsSync('/proc/self')) return true;
  try {
    return readFileSync(cmdline, 'utf8').includes('dev-stack');
  } catch {
    return false;
  }
}

export function writeStackFile(dir: string, env: Record<string, string | undefined>): void {
  mkdirSync(dir, { recursive: true });
  const picked = Object.fromEntries(STACK_ENV_KEYS.filter((k) => env[k]).map((k) => [k, env[k]!]));
  const file: StackFile = { pid: process.pid, startedAt: new Date().toISOString(), env: picked };
  // It holds the tokens: readable by this user only.
  writeFileSync(join(dir, 'stack.json'), JSON.stringify(file, null, 2), { mode: 0o600 });
}

/** The stack file of a stack that is still running, or null (none, or its process is gone). */
export function readStackFile(dir: string): StackFile | null {
  const path = join(dir, 'stack.json');
  if (!existsSync(path)) return null;
  try {
    const file = JSON.parse(readFileSync(path, 'utf8')) as StackFile;
    return Number.isInteger(file.pid) && isAlive(file.pid) && isDevStack(file.pid) ? file : null;
  } catch {
    return null;
  }
}

export function removeStackFile(dir: string): void {
  rmSync(join(dir, 'stack.json'), { force: true });
}

export type Ports = Partial<Record<'redis' | 'mariadb' | 'api' | 'grpc' | 'simulatorGrpc' | 'simulatorHttp', number>>;

export function readPorts(dir: string): Ports {
  try {
    return JSON.parse(readFileSync(join(dir, 'ports.json'), 'utf8')) as Ports;
  } catch {
    return {};
  }
}

export function writePorts(dir: string, ports: Ports): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'ports.json'), JSON.stringify(ports, null, 2));
}
