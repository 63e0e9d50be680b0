/*
 * `npm run admin -- <command>`: what operators do instead of hand-written SQL. `--help` lists the
 * commands, `<command> --help` explains one.
 *
 * Settings: REDIS_URL, DATABASE_URL, ... as for the service; when they are not set, those of the
 * `npm start` stack running from this folder (its ./.data/stack.json, or BILLING_DATA_DIR's).
 * Every failure is one message on stderr and exit code 1 (2 for a wrong command line).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadConfig, ConfigError } from '../config/config.js';
import type { AppContext } from '../context.js';
import { parseMoney } from '../lib/money.js';
import { isAppError } from '../lib/errors.js';
import { dataDir, readStackFile } from './local-stack.js';
// The service's modules (context, clients, progress bar) are loaded only for a command that runs:
// help and mistakes on the command line are answered at once.

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | undefined>;

interface Command {
  args: string[];
  summary: string;
  help: string;
  options: Options;
  /** Checks the command line before anything connects; throws UsageError. */
  check?(args: string[], values: Values): void;
  run(d: CliDeps, args: string[], values: Values): Promise<unknown>;
}

class UsageError extends Error {}
class SettingsError extends Error {}

const print = (data: unknown) => console.log(JSON.stringify(data, null, 2));

/** What the commands use (never the whole context). */
type CliDeps = Pick<AppContext, 'admin' | 'accounts' | 'persistence' | 'reconciliation' | 'webhooks'>;

/** Looking an account up must not create it: refuse users neither Redis nor MySQL knows. */
async function requireUser(d: CliDeps, userId: string): Promise<string> {
  if (!(await d.accounts.exists(userId))) throw new Error(`no account for user "${userId}"`);
  return userId;
}

const COMMANDS: Record<string, Command> = {
  account: {
    args: ['<user_id>'],
    summary: 'live balance and quotas (Redis), the MySQL balance and the ledger sum',
    help:
      'Shows one account as Redis serves it and as MySQL books it.\n' +
      'An unknown user is an error (nothing is created).',
    options: {},
    async run(d, [userId]) {
      print(await d.admin.accountDetail(await requireUser(d, userId)));
    },
  },
  ledger: {
    args: ['<user_id>', '[--limit N]'],
    summary: 'ledger entries, newest first',
    help: 'Lists the newest ledger entries of a user (--limit, 1 to 1000, default 20).',
    options: { limit: { type: 'string', default: '20' } },
    check(_args, values) {
      const limit = Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
        throw new UsageError('--limit must be a whole number from 1 to 1000');
      }
    },
    async run(d, [userId], values) {
      print(await d.admin.ledgerOf(await requireUser(d, userId), Number(values.limit)));
    },
  },
  adjust: {
    args: ['<user_id>', '<amount>', '--reason "text"', '--key <idempotency key>', '[--allow-negative]'],
    summary: 'signed adjustment through the ledger (idempotent by key)',
    help:
      'Credits (5.00) or debits (-5.00) a user through the ledger. Running it again with the same --key\n' +
      'changes nothing. A debit below a zero balance is refused unless --allow-negative is given.\n' +
      'Example: npm run admin -- adjust alice -5.00 --reason "refund reversal" --key ticket-42',
    options: {
      reason: { type: 'string' },
      key: { type: 'string' },
      'allow-negative': { type: 'boolean', default: false },
    },
    check([, amountText], values) {
      const amount = parseMoney(amountText);
      if (amount === null || amount === 0n) {
        throw new UsageError(`amount "${amountText}" is not a non-zero decimal amount such as 5.00 or -5.00`);
      }
      if (!values.reason || !values.key) {
        throw new UsageError('adjust needs --reason "text" and --key <idempotency key>');
      }
    },
    async run(d, [userId, amountText], values) {
      const amount = parseMoney(amountText)!;
      print(
        await d.admin.adjust({
          userId,
          amount,
          reason: values.reason as string,
          idempotencyKey: values.key as string,
          allowNegative: values['allow-negative'] === true,
        }),
      );
      await d.persistence.drainBuffer();
    },
  },
  'webhook-resend': {
    args: ['<endpoint_id>', '<event_id>'],
    summary: 'send a stored event to a webhook endpoint again (a new delivery job)',
    help:
      'Queues one more delivery of an event to an endpoint, whatever became of the earlier ones (the\n' +
      'receiver dedupes by the event id). The worker sends it; its attempts are listed by\n' +
      'GET /admin/v1/webhooks/<endpoint_id>/deliveries.\n' +
      'Example: npm run admin -- webhook-resend we_0193... evt_5f2c...',
    options: {},
    check([endpointId, eventId]) {
      if (!/^[A-Za-z0-9_]{1,40}$/.test(endpointId) || !/^[A-Za-z0-9_]{1,40}$/.test(eventId)) {
        throw new UsageError('endpoint and event ids are 1-40 characters of A-Z a-z 0-9 _');
      }
    },
    async run(d, [endpointId, eventId]) {
      print({ endpointId, eventId, ...(await d.webhooks.resend(endpointId, eventId)) });
    },
  },
  reconcile: {
    args: [],
    summary: 'a reconciliation run now (--full: every account, whole ledger), with progress',
    help:
      'Compares Redis, MySQL and the ledger now, repairs what it may, and prints the run summary.\n' +
      'By default it covers the accounts changed since the last run plus a rolling audit slice;\n' +
      '--full audits every account against its whole ledger.',
    options: { full: { type: 'boolean', default: false } },
    async run(d, _args, values) {
      const full = values.full === true;
      const { default: cliProgress } = await import('cli-progress');
      const total = full ? Math.max(1, await d.admin.accountCount()) : 0;
      const bar = new cliProgress.SingleBar(
        {
          format: `reconcile {phase} ${full ? '[{bar}] {value}/{total}' : '{value} accounts'}`,
          hideCursor: true,
          stream: process.stderr,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0, { phase: 'journal ' });
      const summary = await d.reconciliation.run(
        'manual',
        (phase, done) => bar.update(phase === 'accounts' ? done : 0, { phase: phase.padEnd(8) }),
        { full },
      );
      bar.update(full ? total : summary.users_checked, { phase: 'done    ' });
      bar.stop();
      print(summary);
    },
  },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(
    ([name, c]) => `  ${name} ${c.args.join(' ')}`.trimEnd() + `\n      ${c.summary}`,
  );
  return (
    `usage: npm run admin -- <command> [arguments]   (<command> --help for details)\n\n${lines.join('\n')}\n\n` +
    'Settings: REDIS_URL, DATABASE_URL (and REDIS_KEY_PREFIX, ...) as for the service; unset, those of the\n' +
    '`npm start` stack running from this folder.'
  );
}

/** `-5.00` is an amount, not an option: parseArgs would read it as the short option `-5`. */
const NEGATIVE = '\u0000';
function protectNegatives(argv: string[]): string[] {
  return argv.map((a) => (/^-\d/.test(a) ? NEGATIVE + a : a));
}

function settings(): NodeJS.ProcessEnv {
  if (process.env.REDIS_URL && process.env.DATABASE_URL) return process.env;
  const stack = readStackFile(dataDir());
  if (stack) return { ...stack.env, ...Object.fromEntries(Object.entries(process.env).filter(([, v]) => v)) };
  throw new SettingsError(
    `REDIS_URL and DATABASE_URL are not set, and no running \`npm start\` stack was found under ${dataDir()}. ` +
      'Start the stack with `npm start` in this folder (the CLI then finds it), or set REDIS_URL and DATABASE_URL ' +
      'to the servers of the service (see .env.example).',
  );
}

async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) throw new UsageError(`unknown command "${name}"\n\n${usage()}`);
  const { values, positionals } = parseArgs({
    args: protectNegatives(rest),
    allowPositionals: true,
    strict: true,
    options: { ...command.options, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(`usage: npm run admin -- ${name} ${command.args.join(' ')}\n\n${command.help}`);
    return 0;
  }
  const args = positionals.map((p) => (p.startsWith(NEGATIVE) ? p.slice(1) : p));
  const required = command.args.filter((a) => a.startsWith('<'));
  if (args.length < required.length) {
    throw new UsageError(`${name} needs ${required.join(' ')}; see: npm run admin -- ${name} --help`);
  }
  command.check?.(args, values as Values);
  const env = settings();
  const config = loadConfig(env);
  const { checkDependencies } = await import('./dependencies.js');
  await checkDependencies({ redis: config.redis.url, database: config.database.url });
  const { createContext } = await import('../context.js');
  const { createLogger } = await import('../lib/logger.js');
  const ctx = createContext(config, { logger: createLogger('fatal', 'admin') });
  try {
    await command.run(ctx, args, values as Values);
  } finally {
    await ctx.close();
  }
  return 0;
}

try {
  process.exitCode = await run(process.argv.slice(2));
} catch (err) {
  const e = err as Error & { code?: string };
  const badOption = typeof e.code === 'string' && e.code.startsWith('ERR_PARSE_ARGS');
  const wrongUsage = err instanceof UsageError || badOption;
  const explained = err instanceof ConfigError || err instanceof SettingsError || e.name === 'DependencyError';
  if (isAppError(err)) console.error(`error ${err.code}: ${err.message}`);
  else if (badOption) console.error(`${e.message.split('. To specify')[0]}\nsee: npm run admin -- --help`);
  else if (wrongUsage || explained) console.error(e.message);
  else console.error(`error: ${e.message}`);
  process.exitCode = wrongUsage ? 2 : 1;
}
