// Knex CLI configuration:
//   node --import tsx node_modules/knex/bin/cli.js --knexfile knexfile.ts migrate:status
// The service itself migrates through src/repositories/database.ts at start-up, with the same
// migration names (no file extension, so that running from source and running built agree).
import type { Knex } from 'knex';
import { migrationConfig } from './src/repositories/database.js';

const config: Knex.Config = {
  client: 'mysql2',
  connection: process.env.DATABASE_URL ?? 'mysql://billing:billing@127.0.0.1:3306/billing',
  migrations: migrationConfig,
};

export default config;
