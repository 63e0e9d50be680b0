import { expect } from 'chai';
import { loadConfig, ConfigError } from '../../src/config/config.js';

// Long, distinct secrets: what production requires, so that only the rule under test can refuse.
const PRODUCTION = {
  NODE_ENV: 'production',
  REDIS_URL: 'redis://redis:6379',
  DATABASE_URL: 'mysql://billing:pw@mysql:3306/billing',
  GATEWAY_TOKEN: 'gateway-token-0123456789abcdef0123456789',
  ADMIN_TOKEN: 'admin-token-0123456789abcdef0123456789ab',
  BULL_BOARD_PASSWORD: 'board-password-0123456789abcdef01234567',
  PAYMENT_CALLBACK_SECRET: 'callback-secret-0123456789abcdef0123456',
  PORTAL_SESSION_SECRET: 'portal-session-secret-0123456789abcdef01',
};

describe('config errors and the payment simulator rule', () => {
  it('names the environment variable of a bad value, not only the internal key', () => {
    expect(() => loadConfig({ PORT: 'eighty' })).to.throw(ConfigError, /PORT \/ http\.port: .*must be a number/);
    expect(() => loadConfig({ REDIS_URL: 'http://x' })).to.throw(ConfigError, /REDIS_URL \/ redis\.url/);
  });

  it('refuses the bundled simulator as the payment service in production', () => {
    expect(() => loadConfig({ ...PRODUCTION, PAYMENT_GRPC_ADDR: 'payment-simulator:9101' })).to.throw(
      ConfigError,
      /PAYMENT_GRPC_ADDR .*bundled payment simulator.*ALLOW_PAYMENT_SIMULATOR=true/,
    );
  });

  it('refuses production without a payment address (the default is where the simulator listens)', () => {
    expect(() => loadConfig(PRODUCTION)).to.throw(ConfigError, /PAYMENT_GRPC_ADDR .*must be set in production/);
  });

  it('accepts the simulator in production only when ALLOW_PAYMENT_SIMULATOR says it is a demo', () => {
    const demo = loadConfig({
      ...PRODUCTION,
      PAYMENT_GRPC_ADDR: 'payment-simulator:9101',
      ALLOW_PAYMENT_SIMULATOR: 'true',
    });
    expect(demo.payment.grpcAddr).to.equal('payment-simulator:9101');
    expect(loadConfig({ ...PRODUCTION, PAYMENT_GRPC_ADDR: 'payments.internal:443' }).payment.grpcAddr).to.equal(
      'payments.internal:443',
    );
  });

  it('leaves development alone: npm start runs the simulator on the default address', () => {
    expect(loadConfig({ PAYMENT_GRPC_ADDR: 'payment-simulator:9101' }).payment.grpcAddr).to.equal(
      'payment-simulator:9101',
    );
  });
});
