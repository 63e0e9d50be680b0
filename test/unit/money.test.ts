import { expect } from 'chai';
import { parseMoney, formatMoney, microsToCents, MAX_MICROS } from '../../src/lib/money.js';

describe('money', () => {
  it('parses decimal strings and JSON numbers into exact micro-units', () => {
    expect(parseMoney('100')).to.equal(100_000_000n);
    expect(parseMoney('0.01')).to.equal(10_000n);
    expect(parseMoney('0.0015')).to.equal(1_500n);
    expect(parseMoney('123.456789')).to.equal(123_456_789n);
    expect(parseMoney(0.1)).to.equal(100_000n);
    expect(parseMoney(19.99)).to.equal(19_990_000n);
    expect(parseMoney('-5.5')).to.equal(-5_500_000n);
  });

  it('refuses more than 6 fractional digits, exponents, junk and amounts past 2^53 micro-units', () => {
    for (const bad of [
      '1.0000001',
      '1e3',
      1e21,
      '',
      ' ',
      'abc',
      '1,5',
      '.5',
      '5.',
      NaN,
      Infinity,
      null,
      {},
      '9007199254.740992',
      '0x10',
      ' 1.00',
      '1.00\n',
      '1.00 ',
      '\t1',
      '+1.00',
    ]) {
      expect(parseMoney(bad), String(bad)).to.equal(null);
    }
    expect(parseMoney('9007199254.740991')).to.equal(MAX_MICROS);
  });

  it('formats with at least 2 and at most 6 fractional digits', () => {
    expect(formatMoney(100_000_000n)).to.equal('100.00');
    expect(formatMoney(1_500n)).to.equal('0.0015');
    expect(formatMoney(0n)).to.equal('0.00');
    expect(formatMoney(1n)).to.equal('0.000001');
    expect(formatMoney(10_000n)).to.equal('0.01');
    expect(formatMoney(-2_500_000n)).to.equal('-2.50');
    expect(formatMoney(MAX_MICROS)).to.equal('9007199254.740991');
  });

  it('round-trips every amount it formats', () => {
    for (const m of [0n, 1n, 999n, 10_000n, 123_456_789n, MAX_MICROS]) expect(parseMoney(formatMoney(m))).to.equal(m);
  });

  it('converts to whole cents only when exact', () => {
    expect(microsToCents(12_340_000n)).to.equal(1234n);
    expect(microsToCents(12_345_000n)).to.equal(null);
  });
});
