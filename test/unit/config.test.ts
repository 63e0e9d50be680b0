import { expect } from 'chai';
import { loadConfig, ConfigError } from '../../src/config/config.js';

describe('config', () => {
  it('has the SPEC defaults: port 8107, Asia/Shanghai, the original catalogue, 5s payment deadline', () => {
    const c = loadConfig({});
    expect(c.http).to.include({ port: 8107, host: '127.0.0.1', publicBaseUrl: null });
    expect(c.businessTz).to.equal('Asia/Shanghai');
    expect(c.services.map((s) => [s.name, s.freeQuota, s.unitPrice])).to.deep.equal([
      ['passport', 10000, 1000n],
      ['payment', 1000, 1000n],
      ['asset', 1000, 1000n],
    ]);
    expect(c.payment).to.include({ timeoutMs: 5000, grpcAddr: '127.0.0.1:9101' });
    expect(c.database.poolMax).to.equal(20);
    expect(c.defaultedSecrets).to.have.length(5);
    expect(Object.isFrozen(c) && Object.isFrozen(c.services[0])).to.equal(true);
  });

  it('refunds within the idempotency window by default; REFUND_WINDOW may shorten it, never outlast it', () => {
    expect(loadConfig({}).refundWindowMs).to.equal(86_400_000);
    expect(loadConfig({}, { redis: { idempotency_ttl: '2h' } }).refundWindowMs).to.equal(7_200_000);
    expect(loadConfig({ REFUND_WINDOW: '1h' }).refundWindowMs).to.equal(3_600_000);
    expect(() => loadConfig({ REFUND_WINDOW: '25h' })).to.throw(ConfigError, /REFUND_WINDOW \/ refund_window/);
  });

  it('takes environment variables over the defaults', () => {
    const c = loadConfig({
      PORT: '9000',
      BUSINESS_TZ: 'UTC',
      PAYMENT_TIMEOUT: '750ms',
      GATEWAY_TOKEN: 'g',
      PUBLIC_BASE_URL: 'https://billing.example.com/',
      DATABASE_POOL_MAX: '40',
    });
    expect(c.http.port).to.equal(9000);
    expect(c.database.poolMax).to.equal(40);
    expect(c.businessTz).to.equal('UTC');
    expect(c.payment.timeoutMs).to.equal(750);
    expect(c.auth.gatewayToken).to.equal('g');
    expect(c.http.publicBaseUrl).to.equal('https://billing.example.com');
  });

  it('stops on a bad value with a message naming each key', () => {
    const attempt = () =>
      loadConfig({ PORT: 'eighty', REDIS_URL: 'http://x' }, { services: [{ name: 'x', free_quota: -1 }] });
    expect(attempt)
      .to.throw(ConfigError)
      .with.property('message')
      .that.matches(/http\.port/)
      .and.matches(/redis\.url/)
      .and.matches(/services\.0\.free_quota/);
  });

  it('puts webhook delivery queues on the counters’ Redis unless WEBHOOKS_REDIS_URL names one server', () => {
    expect(loadConfig({}).webhooks.redisUrl).to.equal(null);
    expect(loadConfig({ WEBHOOKS_REDIS_URL: 'redis://q:6391/2' }).webhooks.redisUrl).to.equal('redis://q:6391/2');
    for (const bad of ['http://q:6391', 'redis+cluster://a:1,b:2', ' redis://q:6391']) {
      expect(() => loadConfig({ WEBHOOKS_REDIS_URL: bad }), bad)
        .to.throw(ConfigError)
        .with.property('message')
        .that.matches(/WEBHOOKS_REDIS_URL \/ webhooks\.redis_url/);
    }
  });

  it('runs the webhooks process in the idle CPU class unless WEBHOOKS_SCHED_IDLE=false', () => {
    expect(loadConfig({}).webhooks).to.include({ nice: 10, schedIdle: true });
    expect(loadConfig({ WEBHOOKS_SCHED_IDLE: 'false' }).webhooks.schedIdle).to.equal(false);
    expect(() => loadConfig({ WEBHOOKS_SCHED_IDLE: 'sometimes' }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.matches(/WEBHOOKS_SCHED_IDLE \/ webhooks\.sched_idle/);
  });

  it('holds deliveries above 75 % busy CPU unless WEBHOOKS_YIELD_ABOVE_CPU_PERCENT says otherwise (1-100)', () => {
    expect(loadConfig({}).webhooks.yieldAboveCpuPercent).to.equal(75);
    expect(loadConfig({ WEBHOOKS_YIELD_ABOVE_CPU_PERCENT: '100' }).webhooks.yieldAboveCpuPercent).to.equal(100);
    for (const bad of ['0', '101', '50.5', 'busy'])
      expect(() => loadConfig({ WEBHOOKS_YIELD_ABOVE_CPU_PERCENT: bad }), bad)
        .to.throw(ConfigError)
        .with.property('message')
        .that.matches(/WEBHOOKS_YIELD_ABOVE_CPU_PERCENT \/ webhooks\.yield_above_cpu_percent/);
  });

  it('refuses to start in production on a default or empty secret', () => {
    const env = {
      NODE_ENV: 'production',
      REDIS_URL: 'redis://r:6379',
      DATABASE_URL: 'mysql://u:p@h/db',
      PAYMENT_GRPC_ADDR: 'payments:443',
    };
    expect(() => loadConfig(env)).to.throw(ConfigError, /auth\.gateway_token: must be set in production/);
    expect(() => loadConfig({ ...env, GATEWAY_TOKEN: '' })).to.throw(ConfigError);
    const full = {
      ...env,
      GATEWAY_TOKEN: 'gateway-token-0123456789',
      ADMIN_TOKEN: 'admin-token-0123456789',
      BULL_BOARD_PASSWORD: 'board-password-0123456789',
      PAYMENT_CALLBACK_SECRET: 'callback-secret-0123456789',
      PORTAL_SESSION_SECRET: 'portal-session-secret-0123456789',
    };
    expect(loadConfig(full).defaultedSecrets).to.deep.equal([]);
    expect(() => loadConfig({ ...full, PORTAL_SESSION_SECRET: '' })).to.throw(
      ConfigError,
      /portal\.session_secret: must be set in production/,
    );
  });

  it('refuses short secrets and one secret used for two roles in production', () => {
    const env = {
      NODE_ENV: 'production',
      REDIS_URL: 'redis://r:6379',
      DATABASE_URL: 'mysql://u:p@h/db',
      GATEWAY_TOKEN: 'gateway-token-0123456789',
      ADMIN_TOKEN: 'admin-token-0123456789',
      BULL_BOARD_PASSWORD: 'board-password-0123456789',
      PAYMENT_CALLBACK_SECRET: 'callback-secret-0123456789',
      PORTAL_SESSION_SECRET: 'portal-session-secret-0123456789',
    };
    expect(() => loadConfig({ ...env, GATEWAY_TOKEN: 'x' })).to.throw(
      ConfigError,
      /GATEWAY_TOKEN\): must be at least 16/,
    );
    expect(() => loadConfig({ ...env, ADMIN_TOKEN: env.GATEWAY_TOKEN })).to.throw(
      ConfigError,
      /auth\.admin_token \(ADMIN_TOKEN\): must differ from auth\.gateway_token/,
    );
    expect(() => loadConfig({ ...env, PAYMENT_CALLBACK_SECRET: env.ADMIN_TOKEN })).to.throw(
      ConfigError,
      /callback_secret.*must differ/,
    );
    expect(() => loadConfig({ ...env, PORTAL_SESSION_SECRET: env.PAYMENT_CALLBACK_SECRET })).to.throw(
      ConfigError,
      /session_secret.*must differ/,
    );
    expect(() => loadConfig({ ...env, PORTAL_SESSION_SECRET: 'short' })).to.throw(
      ConfigError,
      /PORTAL_SESSION_SECRET\): must be at least 16/,
    );
    // Outside production a short development token is fine (with a warning at start-up).
    expect(() => loadConfig({ GATEWAY_TOKEN: 'x', ADMIN_TOKEN: 'x' })).not.to.throw();
  });

  it('refuses a price that count × price would push past exact integer range', () => {
    expect(() => loadConfig({}, { services: [{ name: 'big', free_quota: 0, unit_price: '9000000000' }] })).to.throw(
      ConfigError,
      /unit_price/,
    );
  });
});
