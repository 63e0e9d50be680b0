// Knex CLI configuration (`npx knex --knexfile knexfile.ts migrate:latest`). The service itself
// migrates through src/repositories/database.ts at start-up.
import type { Knex } from 'knex';

const config: Knex.Config = {
  client: 'mysql2',
  connection: process.env.DATABASE_URL ?? 'mysql://billing:billing@127.0.0.1:3306/billing',
  migrations: { directory: './migrations', loadExtensions: ['.ts'], tableName: 'knex_migrations' },
};

export default config;
