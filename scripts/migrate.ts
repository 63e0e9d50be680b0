// `npm run migrate`: applies pending Knex migrations to DATABASE_URL (see src/main/migrate.ts).
import '../src/main/migrate.js';
