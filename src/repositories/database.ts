import knexFactory, { type Knex } from 'knex';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../lib/logger.js';
import { ExtensionlessMigrationSource, normaliseMigrationNames } from './migration-source.js';

export type Db = Knex;

/** A Knex pool on mysql2. BIGINTs come back as strings so that no amount passes through a double. */
export function createDatabase(url: string, poolMax = 10, logger?: Logger): Db {
  return knexFactory({
    // Knex reports pool and connection trouble through this, not the console.
    log: logger
      ? {
          warn: (m: unknown) => logger.warn({ knex: String(m) }, 'knex'),
          error: (m: unknown) => logger.error({ knex: String(m) }, 'knex'),
          debug: () => undefined,
          deprecate: () => undefined,
        }
      : undefined,
    client: 'mysql2',
    connection: {
      uri: url,
      supportBigNumbers: true,
      bigNumberStrings: true,
      dateStrings: false,
      timezone: 'Z',
      charset: 'utf8mb4',
    } as Knex.MySql2ConnectionConfig & { uri: string },
    pool: { min: 0, max: poolMax },
    acquireConnectionTimeout: 10_000,
  });
}

const migrationsDir = fileURLToPath(new URL('../../migrations', import.meta.url));

// Names recorded without extension: the same database serves `npm start` (.ts) and the image (.js).
export const migrationConfig: Knex.MigratorConfig = {
  migrationSource: new ExtensionlessMigrationSource(migrationsDir),
  tableName: 'knex_migrations',
};

export async function migrateLatest(db: Db): Promise<string[]> {
  await normaliseMigrationNames(db, migrationConfig.tableName!);
  const [, applied] = (await db.migrate.latest(migrationConfig)) as [number, string[]];
  return applied;
}
