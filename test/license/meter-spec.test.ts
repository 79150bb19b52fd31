/** The --meter spec (license issue, admin entitlement create): limit, period, overage policy and scope. */
import { describe, it, expect } from 'vitest';
import { parseMeter } from '../../src/license/issue.js';
import { hardLimit, overageText } from '../../src/license/meter.js';

describe('--meter METRIC=LIMIT/PERIOD[,overage=N%|record|refuse][,scope=fleet|host]', () => {
  it('reads each policy and scope', () => {
    expect(parseMeter('inferences=1000/month')).toEqual({ metric: 'inferences', limit: 1000, period: 'month' });
    expect(parseMeter('inferences=1000/month,overage=10%')).toEqual({ metric: 'inferences', limit: 1000, period: 'month', overage: { mode: 'allow', percent: 10 } });
    expect(parseMeter('tokens=5/day,overage=record,scope=fleet')).toEqual({ metric: 'tokens', limit: 5, period: 'day', overage: { mode: 'record' }, scope: 'fleet' });
    expect(parseMeter('x=1/term,scope=host,overage=refuse')).toEqual({ metric: 'x', limit: 1, period: 'term', overage: { mode: 'refuse' } });
  });

  it('refuses what it does not know, with the syntax in the message', () => {
    for (const bad of ['x=1/week', 'x=1/month,overage=ten', 'x=1/month,scope=world', 'x=1/month,color=red', 'x=-1/month', 'X=1/month', 'x=1/month,'])
      expect(() => parseMeter(bad), bad).toThrow(/METRIC=LIMIT\/PERIOD|--meter/);
  });

  it('hard limits: refuse stops at the limit, allow N% past it, record never', () => {
    expect(hardLimit({ metric: 'x', limit: 1000, period: 'month' })).toBe(1000);
    expect(hardLimit({ metric: 'x', limit: 1000, period: 'month', overage: { mode: 'allow', percent: 15 } })).toBe(1150);
    expect(hardLimit({ metric: 'x', limit: 1000, period: 'month', overage: { mode: 'record' } })).toBe(Number.MAX_SAFE_INTEGER);
    expect(overageText({ metric: 'x', limit: 1, period: 'day', overage: { mode: 'record' } })).toBe(' (overage recorded)');
  });
});
