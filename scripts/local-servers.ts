/*
 * Runs a real redis-server and a real MariaDB on loopback, with their data under a folder of ours:
 * `npm start` keeps it in ./.data between runs; the tests use a throw-away folder.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { userInfo } from 'node:os';
import mysql from 'mysql2/promise';

export interface LocalServer {
  url: string;
  port: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

const SEARCH_PATH = ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin', '/sbin', '/bin'];

export function findBinary(...names: string[]): string | null {
  for (const name of names) {
    for (const dir of [...(process.env.PATH ?? '').split(':'), ...SEARCH_PATH]) {
      const p = join(dir, name);
      if (dir && existsSync(p)) return p;
    }
  }
  return null;
}

/** Installs Debian packages when a binary is missing and we may (root, or password-less sudo). */
export function ensurePackages(
  log: (s: string) => void = console.log,
  extra: { binary: string; pkg: string }[] = [],
): void {
  // `binary`: a program's name, looked up on the PATH, or an absolute path (a header file, say).
  const present = (binary: string) => (binary.startsWith('/') ? existsSync(binary) : findBinary(binary) !== null);
  const missing: string[] = [];
  if (!findBinary('redis-server')) missing.push('redis-server');
  if (!findBinary('mariadbd', 'mysqld') || !findBinary('mariadb-install-db', 'mysql_install_db'))
    missing.push('mariadb-server');
  for (const { binary, pkg } of extra) if (!present(binary)) missing.push(pkg);
  if (missing.length === 0) return;
  const isRoot = process.getuid?.() === 0;
  const sudo = isRoot ? [] : spawnSync('sudo', ['-n', 'true']).status === 0 ? ['sudo', '-n'] : null;
  if (!sudo)
    throw new Error(
      `missing ${missing.join(', ')}: install with  sudo apt-get install -y ${missing.join(' ')}  ` +
        '(or set REDIS_URL / DATABASE_URL)',
    );
  log(`installing ${missing.join(', ')} from the OS packages...`);
  const run = (args: string[]) => {
    const [cmd, ...rest] = [...sudo, ...args];
    const r = spawnSync(cmd, rest, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.status !== 0) throw new Error(`${args.join(' ')} failed`);
  };
  run(['apt-get', 'update', '-q']);
  run(['apt-get', 'install', '-y', '-q', '--no-install-recommends', ...missing]);
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

/** The last error lines of a server's log, so that a failed start says why without opening the file. */
function errorTail(logFile?: string): string {
  if (!logFile || !existsSync(logFile)) return '';
  const lines = readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((l) => /error|fatal|can't|cannot|denied|in use/i.test(l));
  return lines.length ? `; ${logFile} says:\n  ${lines.slice(-3).join('\n  ')}` : `; see ${logFile}`;
}

async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  child: ChildProcess,
  timeoutMs = 60_000,
  logFile?: string,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode}${errorTail(logFile)}`);
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not start within ${timeoutMs} ms${errorTail(logFile)}`);
}

/** Is `pid` a live process whose working directory is `dir` (redis-server and mariadbd chdir to theirs)? */
export function runsIn(pid: number, dir: string): boolean {
  try {
    return readlinkSync(`/proc/${pid}/cwd`) === resolve(dir);
  } catch {
    return false;
  }
}

/**
 * A server of an earlier run still holding our data folder (its parent was killed, or it ignored
 * the signal) would make the new one fail with a cryptic lock error: stop it first, and say so.
 */
export async function stopLeftover(
  pidFile: string,
  dir: string,
  what: string,
  log: (s: string) => void,
): Promise<boolean> {
  if (!existsSync(pidFile)) return false;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 1 || !runsIn(pid, dir)) return false;
  log(`${what} from an earlier run is still running on ${dir} (pid ${pid}): stopping it first`);
  process.kill(pid, 'SIGTERM');
  const until = Date.now() + 30_000;
  while (runsIn(pid, dir)) {
    if (Date.now() > until) process.kill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

function stopper(child: ChildProcess): () => Promise<void> {
  return () =>
    new Promise((res) => {
      if (child.exitCode !== null || child.signalCode !== null) return res();
      child.once('exit', () => res());
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
    });
}

/** Connects once to a local Redis and asks `probe`; refused connections (still starting) are false. */
async function redisAnswers(port: number, probe: (r: import('ioredis').Redis) => Promise<boolean>): Promise<boolean> {
  const { Redis } = await import('ioredis');
  const r = new Redis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return await probe(r);
  } finally {
    r.disconnect();
  }
}

export interface RedisOptions {
  dir: string;
  port?: number;
  /** append-only file, fsync every second (the production setting; SPEC 7.4) */
  aof?: boolean;
  /**
   * Own process group: a terminal's Ctrl-C then reaches only our Node process, which stops the
   * server in order (MariaDB ignores SIGINT, so a server in the terminal's group would outlive us).
   */
  ownProcessGroup?: boolean;
}

export async function startRedis(opts: RedisOptions): Promise<LocalServer> {
  const bin = findBinary('redis-server');
  if (!bin) throw new Error('redis-server not found (apt-get install redis-server)');
  const dir = resolve(opts.dir);
  mkdirSync(dir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const log = openSync(join(dir, 'redis.log'), 'a');
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--maxmemory-policy',
    'noeviction',
    // Remembered requests: up to 512 per hash stay a listpack, about 48 bytes each (see deduct-7.lua).
    '--hash-max-listpack-entries',
    '512',
    '--appendonly',
    opts.aof === false ? 'no' : 'yes',
    '--appendfsync',
    'everysec',
    '--protected-mode',
    'yes',
    '--daemonize',
    'no',
    '--pidfile',
    join(dir, 'redis.pid'),
  ];
  const child = spawn(bin, args, { stdio: ['ignore', log, log], detached: opts.ownProcessGroup ?? false });
  await waitFor(
    'redis-server',
    () => redisAnswers(port, (r) => r.ping().then((p) => p === 'PONG')),
    child,
    60_000,
    join(dir, 'redis.log'),
  );
  return { url: `redis://127.0.0.1:${port}`, port, process: child, stop: stopper(child) };
}

export interface MariaDbOptions {
  dir: string;
  port?: number;
  database: string;
  user?: string;
  password?: string;
  /** trade durability for speed (throw-away test servers only) */
  fast?: boolean;
  /** InnoDB buffer pool, e.g. '4G' (default 256M) */
  bufferPool?: string;
  /** see RedisOptions.ownProcessGroup */
  ownProcessGroup?: boolean;
}

export async function startMariaDb(opts: MariaDbOptions): Promise<LocalServer> {
  const server = findBinary('mariadbd', 'mysqld');
  const installDb = findBinary('mariadb-install-db', 'mysql_install_db');
  if (!server || !installDb) throw new Error('MariaDB not found (apt-get install mariadb-server)');
  const dir = resolve(opts.dir);
  const dataDir = join(dir, 'data');
  const socket = join(dir, 'mysqld.sock');
  const osUser = userInfo().username;
  // A temporary folder of its own: servers installing at the same time in /tmp have collided.
  const tmpDir = join(dir, 'tmp');
  mkdirSync(tmpDir, { recursive: true });
  if (!existsSync(join(dataDir, 'mysql'))) {
    const r = spawnSync(
      installDb,
      [
        '--no-defaults',
        `--datadir=${dataDir}`,
        `--user=${osUser}`,
        '--auth-root-authentication-method=normal',
        '--skip-test-db',
        `--tmpdir=${tmpDir}`,
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`mariadb-install-db failed: ${r.stderr || r.stdout}`);
  }
  const port = opts.port ?? (await freePort());
  const args = [
    '--no-defaults',
    `--datadir=${dataDir}`,
    `--socket=${socket}`,
    `--port=${port}`,
    '--bind-address=127.0.0.1',
    `--user=${osUser}`,
    `--pid-file=${join(dir, 'mysqld.pid')}`,
    `--log-error=${join(dir, 'mysqld.err')}`,
    '--skip-name-resolve',
    '--max-connections=500',
    '--character-set-server=utf8mb4',
    '--collation-server=utf8mb4_bin',
    `--innodb-buffer-pool-size=${opts.bufferPool ?? '256M'}`,
    `--tmpdir=${tmpDir}`,
  ];
  if (opts.fast)
    args.push('--innodb-flush-log-at-trx-commit=2', '--skip-log-bin', '--innodb-doublewrite=0', '--sync-binlog=0');
  const child = spawn(server, args, { stdio: 'ignore', detached: opts.ownProcessGroup ?? false });
  await waitFor(
    'mariadbd',
    async () => {
      const c = await mysql.createConnection({ socketPath: socket, user: 'root' });
      await c.end();
      return true;
    },
    child,
    60_000,
    join(dir, 'mysqld.err'),
  );

  const user = opts.user ?? 'billing';
  const password = opts.password ?? 'billing';
  const admin = await mysql.createConnection({ socketPath: socket, user: 'root' });
  await admin.query(`CREATE DATABASE IF NOT EXISTS \`${opts.database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  await admin.query(`CREATE USER IF NOT EXISTS '${user}'@'127.0.0.1' IDENTIFIED BY '${password}'`);
  await admin.query(`GRANT ALL ON \`${opts.database}\`.* TO '${user}'@'127.0.0.1'`);
  await admin.end();
  return {
    url: `mysql://${user}:${password}@127.0.0.1:${port}/${opts.database}`,
    port,
    process: child,
    stop: stopper(child),
  };
}

/**
 * A Redis Cluster of `masters` masters (no replicas) on loopback, for testing that every script
 * touches one slot. Needs redis-cli (Debian's redis-tools, installed with redis-server).
 */
export async function startRedisCluster(
  dir: string,
  masters = 3,
): Promise<{ url: string; nodes: LocalServer[]; stop(): Promise<void> }> {
  const cli = findBinary('redis-cli');
  const bin = findBinary('redis-server');
  if (!cli || !bin) throw new Error('redis-server and redis-cli are needed for a cluster');
  const nodes: LocalServer[] = [];
  for (let i = 0; i < masters; i++) {
    const nodeDir = resolve(join(dir, `node${i}`));
    mkdirSync(nodeDir, { recursive: true });
    const port = await freePort();
    const log = openSync(join(nodeDir, 'redis.log'), 'a');
    const child = spawn(
      bin,
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        nodeDir,
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        'nodes.conf',
        '--appendonly',
        'yes',
        '--save',
        '',
        '--maxmemory-policy',
        'noeviction',
        '--hash-max-listpack-entries',
        '512',
        '--daemonize',
        'no',
      ],
      { stdio: ['ignore', log, log] },
    );
    await waitFor('redis cluster node', () => redisAnswers(port, (r) => r.ping().then((p) => p === 'PONG')), child);
    nodes.push({ url: `redis://127.0.0.1:${port}`, port, process: child, stop: stopper(child) });
  }
  const create = spawnSync(
    cli,
    ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
    { encoding: 'utf8' },
  );
  if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
  // Wait until every node agrees the cluster is up.
  for (const n of nodes) {
    await waitFor(
      'cluster state ok',
      () => redisAnswers(n.port, async (r) => /cluster_state:ok/.test(await r.cluster('INFO'))),
      n.process,
    );
  }
  return {
    url: `redis+cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`,
    nodes,
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}
