import type { Knex } from 'knex';

const TABLE_OPTIONS = 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin';

export async function up(knex: Knex): Promise<void> {
  // A recharge order: created pending, then paid (credited once), failed (CreatePayment failed) or
  // closed. payment_id is unique: one payment can pay one order. review_reason flags an order an
  // operator must look at (a callback whose amount or currency did not match, a second payment).
  await knex.raw(`
    CREATE TABLE recharge_orders (
      order_id         VARCHAR(40)  NOT NULL,
      user_id          VARCHAR(64)  NOT NULL,
      amount           BIGINT       NOT NULL,
      currency         CHAR(3)      NOT NULL,
      method           VARCHAR(8)   NOT NULL,
      status           VARCHAR(8)   NOT NULL DEFAULT 'pending',
      payment_id       VARCHAR(64)  NULL,
      pay_url          VARCHAR(1024) NULL,
      pay_code         VARCHAR(1024) NULL,
      pay_params       TEXT         NULL,
      idempotency_key  VARCHAR(128) NULL,
      failure_reason   VARCHAR(255) NULL,
      review_reason    VARCHAR(255) NULL,
      created_at       DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
      updated_at       DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
      paid_at          DATETIME(3)  NULL,
      PRIMARY KEY (order_id),
      UNIQUE KEY uq_orders_payment (payment_id),
      UNIQUE KEY uq_orders_idempotency (user_id, idempotency_key),
      KEY ix_orders_status_time (status, created_at),
      KEY ix_orders_user_time (user_id, created_at)
    ) ${TABLE_OPTIONS}`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('recharge_orders');
}
