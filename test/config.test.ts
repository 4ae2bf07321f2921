import t from 'tap';
import { ConfigError, loadConfig } from '../src/config.js';

t.test('defaults follow SPEC §5', async (t) => {
  const c = loadConfig({});
  t.match(c, { PORT: 3000, HOST: '127.0.0.1', DATA_DIR: '.data', DEFAULT_COUNTRY: 'IN', DECISION_BUDGET_MS: 1500, CDR_RETENTION_DAYS: 0, LOG_LEVEL: 'info' });
  t.equal(c.PUBLIC_URL, 'http://127.0.0.1:3000');
  t.same(c.EXOTEL_ALLOWED_CIDRS, []);
  t.equal(c.DATABASE_URL, undefined);
});

t.test('values are converted and PUBLIC_URL loses its trailing slash', async (t) => {
  const c = loadConfig({ PORT: '8080', DECISION_BUDGET_MS: '900', PUBLIC_URL: 'https://x.example/', EXOTEL_ALLOWED_CIDRS: '10.0.0.0/8, 127.0.0.1', DEFAULT_COUNTRY: 'US' });
  t.equal(c.PORT, 8080);
  t.equal(c.DECISION_BUDGET_MS, 900);
  t.equal(c.PUBLIC_URL, 'https://x.example');
  t.same(c.EXOTEL_ALLOWED_CIDRS, ['10.0.0.0/8', '127.0.0.1']);
});

t.test('every bad variable is named with its value and the problem', async (t) => {
  try {
    loadConfig({ PORT: 'eighty', LOG_LEVEL: 'loud', DEFAULT_COUNTRY: 'ZZ', EXOTEL_ALLOWED_CIDRS: '10.0.0.0/99', DATABASE_URL: 'mysql://x' });
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof ConfigError);
    const msg = (err as Error).message;
    for (const name of ['PORT="eighty"', 'LOG_LEVEL="loud"', 'DATABASE_URL="mysql://x"']) t.match(msg, name);
  }
  t.throws(() => loadConfig({ DEFAULT_COUNTRY: 'ZZ' }), /DEFAULT_COUNTRY="ZZ"/);
  t.throws(() => loadConfig({ EXOTEL_ALLOWED_CIDRS: '10.0.0.0/99' }), /EXOTEL_ALLOWED_CIDRS: "10.0.0.0\/99"/);
  t.throws(() => loadConfig({ ADMIN_API_KEY: 'short' }), /ADMIN_API_KEY/);
});
