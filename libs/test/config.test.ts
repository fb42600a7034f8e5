import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cacheSummary, CONFIG_VARIABLES, ConfigError, configWarnings, loadConfig } from '@media-jobs/libs';
import { REPO_ROOT } from '@media-jobs/libs/testing';

describe('loadConfig', () => {
  it('when nothing is set, then the defaults of DESIGN.md apply', () => {
    const c = loadConfig({});
    expect(c.cacheTtlHours).toBe(24);
    expect(c.cacheTtlMs).toBe(86_400_000);
    expect(c.cleanupIntervalMinutes).toBe(30);
    expect(c.natsUrl).toBe('nats://127.0.0.1:4222');
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(c.port).toBe(8000);
    expect(c.allowPrivateUrls).toBe(false);
    expect(c.normalizeTargetLufs).toBe(-16);
    expect(c.normalizeTruePeakDb).toBe(-1.5);
    expect(c.adminToken).toBe('');
    expect(Object.isFrozen(c)).toBe(true);
    expect(cacheSummary(c)).toBe('Cache TTL: 24h, Cleanup: 30min');
    expect(configWarnings(c)).toEqual([]);
  });

  it('when the TTL is 0.5, then it means 30 minutes and a warning says why it is low', () => {
    const c = loadConfig({ CACHE_TTL_HOURS: '0.5', CLEANUP_INTERVAL_MINUTES: '1' });
    expect(c.cacheTtlMs).toBe(1_800_000);
    expect(cacheSummary(c)).toBe('Cache TTL: 0.5h, Cleanup: 1min');
    const warnings = configWarnings(c);
    expect(warnings.some((w) => w.includes('CACHE_TTL_HOURS=0.5') && w.includes('1 h'))).toBe(true);
    expect(warnings.some((w) => w.includes('CLEANUP_INTERVAL_MINUTES=1') && w.includes('5 min'))).toBe(true);
  });

  it('when the interval is longer than the TTL, then a warning says so', () => {
    const warnings = configWarnings(loadConfig({ CACHE_TTL_HOURS: '1', CLEANUP_INTERVAL_MINUTES: '90' }));
    expect(warnings.some((w) => w.includes('longer than CACHE_TTL_HOURS'))).toBe(true);
  });

  it('when a job may run longer than the TTL, then a warning says its result would be discarded', () => {
    const warnings = configWarnings(loadConfig({ CACHE_TTL_HOURS: '0.5', NORMALIZE_TIMEOUT_SECONDS: '600' }));
    const long = warnings.filter((w) => w.includes('expires before it finishes'));
    expect(long).toEqual([expect.stringContaining('DOWNLOAD_TIMEOUT_SECONDS=3600')]);
  });

  it.each([
    ['CACHE_TTL_HOURS', '0'],
    ['CACHE_TTL_HOURS', '-1'],
    ['CACHE_TTL_HOURS', 'abc'],
    ['CACHE_TTL_HOURS', '1e3'],
    ['CLEANUP_INTERVAL_MINUTES', '0'],
    ['PORT', '70000'],
    ['PORT', '80.5'],
    ['NATS_URL', 'http://x'],
    ['REDIS_URL', 'not a url'],
    ['LOG_LEVEL', 'loud'],
    ['ALLOW_PRIVATE_URLS', 'maybe'],
    ['NORMALIZE_TARGET_LUFS', '3'],
    ['DOWNLOAD_CONCURRENCY', '0'],
  ])('when %s=%s, then loading fails naming the variable, the value and the rule', (name, value) => {
    try {
      loadConfig({ [name]: value });
      expect.fail('loadConfig accepted a bad value');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const e = err as ConfigError;
      expect(e.variable).toBe(name);
      expect(e.message).toContain(name);
      expect(e.message).toContain(JSON.stringify(value));
      expect(e.rule.length).toBeGreaterThan(5);
    }
  });

  it('when a service starts with a bad value, then it prints one line and exits with code 1', () => {
    const result = spawnSync(
      process.execPath,
      ['--conditions=media-jobs-source', '--import', 'tsx', 'gateway/src/main.ts'],
      {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH, CACHE_TTL_HOURS: 'half' },
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    expect(result.status).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toEqual(['Invalid configuration: CACHE_TTL_HOURS="half" must be a decimal number > 0']);
    expect(result.stdout).toBe('');
  });
});

describe('configuration docs', () => {
  const read = (name: string) => readFileSync(join(REPO_ROOT, name), 'utf8');
  // Fixed inside the compose network (its servers, volume and image), so not passed through.
  const FIXED_IN_COMPOSE = [
    'NATS_URL',
    'REDIS_URL',
    'DATA_DIR',
    'HOST',
    'PORT',
    'YTDLP_PATH',
    'FFMPEG_PATH',
    'FFPROBE_PATH',
  ];

  it('when a variable is read by the services, then .env.example, the README and docker-compose.yml name it', () => {
    const envExample = read('.env.example');
    const readme = read('README.md');
    const compose = read('docker-compose.yml');
    for (const name of CONFIG_VARIABLES) {
      expect(envExample, name).toMatch(new RegExp(`^#? ?${name}=`, 'm'));
      expect(readme, name).toContain(`\`${name}\``);
      if (!FIXED_IN_COMPOSE.includes(name)) expect(compose, name).toContain(`${name}: \${${name}:-}`);
    }
  });
});
