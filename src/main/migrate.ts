// Applies pending migrations to DATABASE_URL and exits: `npm run migrate`, and docker-compose's
// migrate step (node dist/src/main/migrate.js) that the other roles wait for.
import { loadConfig, ConfigError } from '../config/config.js';
import { createDatabase, migrateLatest } from '../repositories/database.js';
import { checkMysql } from './dependencies.js';

try {
  const config = loadConfig();
  if (!config.database.url)
    throw new ConfigError('DATABASE_URL is not set: give the MySQL to migrate (see .env.example).');
  await checkMysql(config.database.url);
  const db = createDatabase(config.database.url);
  try {
    const applied = await migrateLatest(db);
    console.log(applied.length ? `applied: ${applied.join(', ')}` : 'already up to date');
  } finally {
    await db.destroy();
  }
} catch (err) {
  console.error(`migrate failed: ${(err as Error).message}`);
  process.exitCode = err instanceof ConfigError ? 2 : 1;
}
