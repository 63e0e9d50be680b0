import { readdirSync, readFileSync } from 'node:fs';
import type { Result } from 'ioredis';
import type { RedisClient } from './connection.js';

/*
 * Loads every src/redis/commands/<name>-<numKeys>.lua once as an ioredis custom command named
 * <name>Script (EVALSHA, falling back to EVAL after a Redis restart). A line
 * `--- @include "includes/<file>"` is replaced by that file (once per script, nested includes too), as in
 * BullMQ's commands: shared Lua (pricing a call, printing an integer) is written once.
 */
const commandsDir = new URL('./commands/', import.meta.url);

function withIncludes(lua: string, included = new Set<string>()): string {
  return lua.replace(/^--- @include "([a-z/-]+)"$/gm, (_, name: string) => {
    if (included.has(name)) return '';
    included.add(name);
    return withIncludes(readFileSync(new URL(`${name}.lua`, commandsDir), 'utf8'), included);
  });
}

export function defineScripts(redis: RedisClient): void {
  for (const file of readdirSync(commandsDir)) {
    const m = /^([a-z-]+)-(\d+)\.lua$/.exec(file);
    if (!m) continue;
    const name = m[1].replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) + 'Script';
    const lua = withIncludes(readFileSync(new URL(file, commandsDir), 'utf8'));
    redis.defineCommand(name, { numberOfKeys: Number(m[2]), lua });
  }
}

type Arg = string | number;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    checkScript(account: string, quota: string, ...args: Arg[]): Result<string[], Context>;
    deductScript(account: string, quota: string, request: string, pending: string, ...args: Arg[]): Result<string[], Context>;
    initAccountScript(account: string, quota: string, ...args: Arg[]): Result<number, Context>;
    reserveScript(account: string, quota: string, request: string, reservation: string, holds: string, ...args: Arg[]): Result<string[], Context>;
    commitReservationScript(account: string, quota: string, reservation: string, holds: string, pending: string, ...args: Arg[]): Result<string[], Context>;
    releaseReservationScript(account: string, quota: string, reservation: string, holds: string, ...args: Arg[]): Result<string[], Context>;
    accountSnapshotScript(account: string, pending: string, holds: string): Result<string[], Context>;
    repairAccountScript(account: string, quota: string, pending: string, holds: string, ...args: Arg[]): Result<string[], Context>;
    creditScript(account: string, marker: string, pending: string, ...args: Arg[]): Result<string[], Context>;
  }
}
