/*
 * Migrations named without their file extension. Knex's default source records `x.ts` when the
 * service runs from source (npm start, tsx) and `x.js` when it runs built (the image), and then
 * refuses the other's database as "corrupt". Names here are the file name without extension, and
 * rows recorded the old way are renamed before migrating, so every existing database keeps working.
 */
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Knex } from 'knex';

const MIGRATION_FILE = /^(.+)\.(ts|js|mjs)$/;
// Run from source, this module is .ts and so are the migrations; built, both are .js.
const OWN_EXTENSION = import.meta.url.endsWith('.ts') ? 'ts' : 'js';

export class ExtensionlessMigrationSource implements Knex.MigrationSource<string> {
  constructor(private readonly directory: string) {}

  async getMigrations(): Promise<string[]> {
    const names = readdirSync(this.directory)
      .filter((f) => !f.endsWith('.d.ts') && !f.endsWith('.map'))
      .map((f) => MIGRATION_FILE.exec(f)?.[1])
      .filter((n): n is string => !!n);
    return [...new Set(names)].sort();
  }

  getMigrationName(name: string): string {
    return name;
  }

  async getMigration(name: string): Promise<Knex.Migration> {
    const candidates = [OWN_EXTENSION, 'js', 'mjs', 'ts'].map((ext) => join(this.directory, `${name}.${ext}`));
    const file = candidates.find((f) => existsSync(f));
    if (!file) throw new Error(`migration ${name} not found in ${this.directory}`);
    return (await import(pathToFileURL(file).href)) as Knex.Migration;
  }
}

/** Renames rows recorded with an extension (`x.ts`, `x.js`) to the extension-less name. Idempotent. */
export async function normaliseMigrationNames(db: Knex, tableName: string): Promise<void> {
  if (!(await db.schema.hasTable(tableName))) return;
  await db(tableName)
    .where('name', 'like', '%.ts')
    .orWhere('name', 'like', '%.js')
    .update({ name: db.raw('LEFT(name, CHAR_LENGTH(name) - 3)') });
}
