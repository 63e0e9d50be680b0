#!/usr/bin/env node
// `npm start`: plain JavaScript with no dependencies, so that it can run `npm ci` on a fresh clone
// before anything else is loaded; then it hands over to scripts/dev-stack.ts.
import { existsSync } from 'node:fs';
import { setInterval } from 'node:timers';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { withServiceNodeOptions } from './node-options.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) {
  console.log('node_modules is missing: running npm ci ...');
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'scripts', 'dev-stack.ts')], {
  cwd: root,
  // Inherited by every Node process of the stack (the API processes, the webhooks process).
  env: { ...process.env, NODE_OPTIONS: withServiceNodeOptions(process.env.NODE_OPTIONS) },
  stdio: 'inherit',
});
// npm passes SIGINT / SIGTERM to us (the start script execs node); a terminal's Ctrl-C reaches the
// stack directly as well, and it stops once however many copies arrive.
// A broken stdout (terminal closed) must not kill us before the stack is told to stop.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
// If npm itself dies outright, nothing passes a signal on: stop the stack when our parent is gone.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) child.kill('SIGTERM');
}, 500).unref();
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
