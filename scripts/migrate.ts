// `npm run migrate`: applies pending Knex migrations to DATABASE_URL.
import { loadConfig } from '../src/config/config.js';
import { createDatabase, migrateLatest } from '../src/repositories/database.js';

const config = loadConfig();
if (!config.database.url) throw new Error('DATABASE_URL is not set');
const db = createDatabase(config.database.url);
const applied = await migrateLatest(db);
console.log(applied.length ? `applied: ${applied.join(', ')}` : 'already up to date');
await db.destroy();
