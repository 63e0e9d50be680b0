import { expect } from 'chai';
import { BusinessCalendar } from '../../src/lib/clock.js';
import { RedisKeys } from '../../src/redis/keys.js';

describe('business calendar', () => {
  const cal = new BusinessCalendar('Asia/Shanghai');

  it('puts the month boundary at midnight of the 1st in the business zone, not UTC', () => {
    expect(cal.period(new Date('2026-11-30T15:59:59.900Z'))).to.equal('202611');
    expect(cal.period(new Date('2026-11-30T16:00:00.100Z'))).to.equal('202612');
    expect(cal.day(new Date('2026-11-30T16:00:00.100Z'))).to.equal('2026-12-01');
    // The cache of the current day must not leak across the boundary in either direction.
    expect(cal.period(new Date('2026-11-30T15:59:59.999Z'))).to.equal('202611');
  });

  it('gives month days, day starts and the next period start', () => {
    expect(cal.monthDays(new Date('2026-02-10T00:00:00Z'))).to.deep.equal({ from: '2026-02-01', to: '2026-02-28' });
    expect(cal.startOfDay('2026-11-25').toISOString()).to.equal('2026-11-24T16:00:00.000Z');
    expect(cal.nextPeriodStart(new Date('2026-12-31T17:00:00Z')).toISOString()).to.equal('2027-01-31T16:00:00.000Z');
    expect(cal.daysBetween('2026-12-30', '2027-01-02')).to.deep.equal([
      '2026-12-30',
      '2026-12-31',
      '2027-01-01',
      '2027-01-02',
    ]);
    expect(cal.isValidDay('2026-02-30')).to.equal(false);
  });

  it('refuses an unknown zone', () => {
    expect(() => new BusinessCalendar('Mars/Olympus')).to.throw(/unknown time zone/);
  });
});

describe('redis keys', () => {
  const keys = new RedisKeys('bill');
  it('gives every key of a user one hash tag, and finds the user in a journal key', () => {
    const u = 'dev@corp.example:42';
    for (const k of [
      keys.account(u),
      keys.quota(u, '202611'),
      keys.request(u, 'r{1}'),
      keys.pending(u),
      keys.applied(u, 'x'),
      keys.reservation(u, 'r'),
      keys.holds(u),
    ]) {
      expect(k.indexOf(`{${u}}`)).to.equal(5);
    }
    expect(keys.userOf(keys.pending(u))).to.equal(u);
    expect(keys.userOf(keys.holds(u))).to.equal(u);
  });

  it('keeps byte-different ids apart, and no id can make a key match a maintenance pattern', () => {
    const glob = (pattern: string) =>
      new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
    const patterns = [keys.holdsPattern(), keys.quotaPattern(), keys.pendingPattern(), keys.accountPattern()].map(glob);
    const hostile = [
      'x}:holds',
      'p}:q:200001',
      'a}:pending',
      'b}:acct',
      '*',
      '?',
      '[a]',
      '{x}',
      'r1',
      'r1 ',
      ' r1',
      'R1',
      'A',
      '%41',
    ];
    const made = new Set<string>();
    for (const id of hostile) {
      for (const key of [keys.request('u', id), keys.reservation('u', id), keys.applied('u', id)]) {
        expect(
          patterns.some((p) => p.test(key)),
          key,
        ).to.equal(false);
        expect(key.slice(key.indexOf('}') + 1)).not.to.match(/[{}*?[\]]/);
        made.add(key);
      }
    }
    expect(made.size).to.equal(hostile.length * 3);
  });
});
