/*
 * The original service's design, for comparison only: every deduct is one MySQL transaction that
 * locks the user's balance and quota rows with SELECT ... FOR UPDATE, charges, and inserts the
 * record. Same HTTP stack and auth as the service.
 */
import express from 'express';
import mysql from 'mysql2/promise';
import { requireBearer } from '../src/api/auth.middleware.js';

const pool = mysql.createPool({
  uri: process.env.DATABASE_URL,
  connectionLimit: 20,
  supportBigNumbers: true,
  bigNumberStrings: true,
});
const PRICE = 1000n;
const FREE = 10_000n;

export async function createBaselineTables(db: mysql.Pool | mysql.Connection): Promise<void> {
  await db.query(
    `CREATE TABLE IF NOT EXISTS baseline_accounts (user_id VARCHAR(64) PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB`,
  );
  await db.query(
    `CREATE TABLE IF NOT EXISTS baseline_quota (user_id VARCHAR(64), period CHAR(6), service_name VARCHAR(32), used BIGINT NOT NULL, PRIMARY KEY (user_id, period, service_name)) ENGINE=InnoDB`,
  );
  await db.query(
    `CREATE TABLE IF NOT EXISTS baseline_records (id BIGINT AUTO_INCREMENT PRIMARY KEY, user_id VARCHAR(64), request_id VARCHAR(128), service_name VARCHAR(32), free_count INT, paid_count INT, amount BIGINT, created_at DATETIME(3), UNIQUE KEY (user_id, request_id)) ENGINE=InnoDB`,
  );
}

const app = express();
app.use(express.json({ limit: '16kb' }));
app.post('/internal/v1/billing/deduct', requireBearer(process.env.GATEWAY_TOKEN ?? 'bench'), async (req, res) => {
  const { request_id, user_id, service_name } = req.body as Record<string, string>;
  const count = BigInt((req.body as { count?: number }).count ?? 1);
  const conn = await pool.getConnection();
  try {
    await conn.beginTransaction();
    const [acct] = await conn.query('SELECT balance FROM baseline_accounts WHERE user_id = ? FOR UPDATE', [user_id]);
    const [quota] = await conn.query(
      "SELECT used FROM baseline_quota WHERE user_id = ? AND period = '202611' AND service_name = ? FOR UPDATE",
      [user_id, service_name],
    );
    const balance = BigInt((acct as { balance: string }[])[0]?.balance ?? 0);
    const used = BigInt((quota as { used: string }[])[0]?.used ?? 0);
    const free = FREE - used > count ? count : FREE - used > 0n ? FREE - used : 0n;
    const paid = count - free;
    const amount = paid * PRICE;
    if (amount > balance) {
      await conn.rollback();
      res.status(402).json({ success: false, code: 10001, message: 'insufficient balance' });
      return;
    }
    await conn.query(
      "INSERT INTO baseline_quota VALUES (?, '202611', ?, ?) ON DUPLICATE KEY UPDATE used = used + VALUES(used)",
      [user_id, service_name, free.toString()],
    );
    if (amount > 0n)
      await conn.query('UPDATE baseline_accounts SET balance = balance - CAST(? AS SIGNED) WHERE user_id = ?', [
        amount.toString(),
        user_id,
      ]);
    await conn.query(
      'INSERT INTO baseline_records (user_id, request_id, service_name, free_count, paid_count, amount, created_at) VALUES (?, ?, ?, ?, ?, ?, NOW(3))',
      [user_id, request_id, service_name, free.toString(), paid.toString(), amount.toString()],
    );
    await conn.commit();
    res.json({ success: true, data: { freeCount: Number(free), paidCount: Number(paid), amount: amount.toString() } });
  } catch (err) {
    await conn.rollback().catch(() => undefined);
    res.status(500).json({ success: false, code: 50000, message: (err as Error).message });
  } finally {
    conn.release();
  }
});

if (process.env.PORT) {
  await createBaselineTables(pool);
  const server = app.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('ready'));
  process.on('SIGTERM', () => server.close(() => void pool.end().then(() => process.exit(0))));
}
