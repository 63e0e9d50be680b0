/*
 * docker-compose.yml checked without Docker: parsed, and held to the rules of SPEC 10.6 and the
 * README's operations section.
 */
import { readFileSync, existsSync } from 'node:fs';
import { expect } from 'chai';
import { parse } from 'yaml';

interface Service {
  profiles?: string[];
  command?: string[];
  ports?: (string | { published?: string | number; host_ip?: string })[];
  environment?: Record<string, string | number>;
  depends_on?: Record<string, { condition: string }>;
}

const text = readFileSync('docker-compose.yml', 'utf8');
const compose = parse(text) as { services: Record<string, Service> };
const services = compose.services;
const ROLES = ['api', 'worker', 'webhooks', 'scheduler'];

describe('docker-compose.yml', () => {
  it('runs the payment simulator only in the dev profile, and points nothing at it by default', () => {
    expect(services['payment-simulator'].profiles).to.deep.equal(['dev']);
    for (const [name, s] of Object.entries(services)) {
      if (name !== 'payment-simulator') expect(s.profiles, name).to.equal(undefined);
      expect(String(s.environment?.PAYMENT_GRPC_ADDR ?? ''), name).not.to.include('payment-simulator');
    }
  });

  it('publishes nothing on all interfaces, and no fixed host port on a scalable service', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const p of s.ports ?? []) {
        const spec = String(p);
        expect(spec, `${name} publishes ${spec}`).to.match(/^127\.0\.0\.1:/);
        if (ROLES.includes(name))
          expect(spec, `${name} replicas would collide on ${spec}`).to.match(/^127\.0\.0\.1::\d+$/);
      }
    }
  });

  it('starts worker, scheduler and api only after a migrate step succeeded', () => {
    const migrate = services.migrate;
    expect(migrate.command?.join(' ')).to.equal('node dist/src/main/migrate.js');
    for (const role of ROLES) {
      expect(services[role].depends_on?.migrate, role).to.deep.equal({ condition: 'service_completed_successfully' });
      // The migrate step did it: a role migrating too would race it.
      expect(String(services[role].environment?.MIGRATE_ON_START), role).to.equal('false');
    }
  });

  it('runs entry points the build produces', () => {
    for (const [name, s] of Object.entries(services)) {
      const js = s.command?.find((c) => /^dist\/.+\.js$/.test(c));
      if (!js) continue;
      const source = js.replace(/^dist\//, '').replace(/\.js$/, '.ts');
      expect(existsSync(source), `${name}: ${js} is built from ${source}`).to.equal(true);
      expect(
        /^(src|simulator|migrations|proto)\//.test(source),
        `${name}: ${source} is in tsconfig.build.json`,
      ).to.equal(true);
    }
  });

  it('takes every variable it reads from the environment from .env.example', () => {
    const example = readFileSync('.env.example', 'utf8');
    const documented = new Set([...example.matchAll(/^([A-Z_][A-Z0-9_]*)=/gm)].map((m) => m[1]));
    // `$$X` is the container's own variable, escaped from compose.
    const used = [...text.matchAll(/(?<!\$)\$\{([A-Z_][A-Z0-9_]*)/g)].map((m) => m[1]);
    expect(used.length).to.be.greaterThan(0);
    for (const name of used) expect(documented.has(name), `${name} is missing from .env.example`).to.equal(true);
    for (const name of ['MYSQL_PASSWORD', 'MYSQL_ROOT_PASSWORD']) expect(used).to.include(name);
  });

  it('delivers webhooks in the webhooks service only, with a smaller CPU share', () => {
    expect(services.webhooks.command?.join(' ')).to.equal('node dist/src/main/webhooks.js');
    for (const role of ROLES) expect(String(services[role].environment?.WEBHOOKS_OWN_PROCESS), role).to.equal('true');
    expect((services.webhooks as { cpu_shares?: number }).cpu_shares).to.be.below(1024);
  });

  it('puts the delivery queues on a Redis of their own, which every role waits for', () => {
    const url = String(services.api.environment?.WEBHOOKS_REDIS_URL);
    const host = /^redis:\/\/([a-z-]+):6379$/.exec(url)?.[1];
    expect(host, url).to.not.equal(undefined);
    expect(host).to.not.equal('redis');
    expect(services[host!], `service ${host}`).to.not.equal(undefined);
    for (const role of ROLES) {
      expect(services[role].environment?.WEBHOOKS_REDIS_URL, role).to.equal(url);
      expect(services[role].depends_on?.[host!], role).to.deep.equal({ condition: 'service_healthy' });
    }
  });

  it('keeps .env out of the image', () => {
    const ignored = readFileSync('.dockerignore', 'utf8')
      .split('\n')
      .map((l) => l.trim());
    expect(ignored).to.include('.env');
  });
});
