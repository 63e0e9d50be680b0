/*
 * `npm run admin -- <command>`: what operators do instead of hand-written SQL.
 *
 *   account <user_id>                                  live balance, quotas, MySQL and ledger view
 *   ledger <user_id> [--limit 20]                      ledger entries, newest first
 *   adjust <user_id> <amount> --reason "…" --key K [--allow-negative]
 *                                                      signed adjustment through the ledger (idempotent by key)
 *   reconcile                                          a reconciliation run now, with progress
 *
 * Uses the same configuration (REDIS_URL, DATABASE_URL, ...) as the service.
 */
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { loadConfig } from '../config/config.js';
import { createContext } from '../context.js';
import { createLogger } from '../lib/logger.js';
import { parseMoney } from '../lib/money.js';
import { isAppError } from '../lib/errors.js';
import { scanKeys } from '../redis/scan.js';
import type { RedisClient } from '../redis/connection.js';
import type { RedisKeys } from '../redis/keys.js';
import type { AdminService } from '../services/admin.service.js';
import type { PersistenceService } from '../services/persistence.service.js';
import type { ReconciliationService } from '../services/reconciliation.service.js';

const USAGE = `usage: npm run admin -- account <user_id>
       npm run admin -- ledger <user_id> [--limit N]
       npm run admin -- adjust <user_id> <amount> --reason "text" --key <idempotency key> [--allow-negative]
       npm run admin -- reconcile`;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { reason: { type: 'string' }, key: { type: 'string' }, 'allow-negative': { type: 'boolean', default: false }, limit: { type: 'string', default: '20' } },
});
const [command, ...args] = positionals;
if (!command) {
  console.error(USAGE);
  process.exit(2);
}

/** What the commands use: the admin service, the buffer to flush, the account keys to count, a run. */
interface AdminCliDeps {
  admin: AdminService;
  persistence: Pick<PersistenceService, 'drainBuffer'>;
  reconciliation: Pick<ReconciliationService, 'run'>;
  redis: RedisClient;
  keys: Pick<RedisKeys, 'accountPattern'>;
}

const print = (data: unknown) => console.log(JSON.stringify(data, null, 2));

async function runCommand(d: AdminCliDeps): Promise<void> {
  switch (command) {
    case 'account':
      print(await d.admin.accountDetail(args[0]));
      break;
    case 'ledger':
      print(await d.admin.ledgerOf(args[0], Number(values.limit)));
      break;
    case 'adjust': {
      const amount = parseMoney(args[1]);
      if (!args[0] || amount === null || !values.reason || !values.key) throw new Error(`adjust needs <user_id> <amount> --reason --key\n${USAGE}`);
      print(await d.admin.adjust({ userId: args[0], amount, reason: values.reason, idempotencyKey: values.key, allowNegative: values['allow-negative'] ?? false }));
      await d.persistence.drainBuffer();
      break;
    }
    case 'reconcile': {
      let users = 0;
      for await (const keys of scanKeys(d.redis, d.keys.accountPattern())) users += keys.length;
      const bar = new cliProgress.SingleBar({ format: 'reconcile {phase} [{bar}] {value}/{total}', hideCursor: true }, cliProgress.Presets.shades_classic);
      bar.start(Math.max(users, 1), 0, { phase: 'journal ' });
      const summary = await d.reconciliation.run('manual', (phase, done) => bar.update(phase === 'accounts' ? done : 0, { phase: phase.padEnd(8) }));
      bar.update(Math.max(users, 1), { phase: 'done    ' });
      bar.stop();
      print(summary);
      break;
    }
    default:
      throw new Error(`unknown command ${command}\n${USAGE}`);
  }
}

const config = loadConfig();
const ctx = createContext(config, { logger: createLogger('warn', 'admin') });

try {
  const { admin, persistence, reconciliation, redis, keys } = ctx;
  await runCommand({ admin, persistence, reconciliation, redis, keys });
} catch (err) {
  console.error(isAppError(err) ? `error ${err.code}: ${err.message}` : (err as Error).message);
  process.exitCode = 1;
} finally {
  await ctx.close();
}
