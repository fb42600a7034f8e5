import { describe, expect, it } from 'vitest';
import { ConfigError, effectiveConfig, loadConfig, redactedProxy } from '@media-jobs/libs';

const fails = (env: Record<string, string>): ConfigError => {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('loadConfig accepted it');
};

describe('configuration of sites that push back', () => {
  it('when nothing is set, then no cookies, no proxy, two downloads per site and no gap', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      ytDlpCookiesFile: '',
      ytDlpProxy: '',
      siteConcurrency: 2,
      siteMinGapMs: 0,
    });
    expect(effectiveConfig(config)).toMatchObject({ YTDLP_COOKIES_FILE: 'off', YTDLP_PROXY: 'off' });
  });

  it('when they are set, then the cookies path is absolute and the proxy is announced without its credentials', () => {
    const config = loadConfig({
      YTDLP_COOKIES_FILE: 'secrets/cookies.txt',
      YTDLP_PROXY: 'http://user:pw@proxy.internal:3128',
      SITE_CONCURRENCY: '0',
      SITE_MIN_GAP_SECONDS: '1.5',
    });
    expect(config.ytDlpCookiesFile).toMatch(/^\/.*\/secrets\/cookies\.txt$/);
    expect(config).toMatchObject({ siteConcurrency: 0, siteMinGapMs: 1500 });
    expect(effectiveConfig(config).YTDLP_PROXY).toBe('http://***@proxy.internal:3128');
    expect(JSON.stringify(effectiveConfig(config))).not.toContain('pw');
    expect(redactedProxy('socks5://proxy:1080')).toBe('socks5://proxy:1080');
  });

  it.each([
    [{ YTDLP_PROXY: 'ftp://proxy:21' }, 'YTDLP_PROXY'],
    [{ YTDLP_PROXY: 'not a url' }, 'YTDLP_PROXY'],
    [{ SITE_CONCURRENCY: '-1' }, 'SITE_CONCURRENCY'],
    [{ SITE_CONCURRENCY: '2.5' }, 'SITE_CONCURRENCY'],
    [{ SITE_MIN_GAP_SECONDS: '-1' }, 'SITE_MIN_GAP_SECONDS'],
  ])('when %j, then the start stops naming %s', (env, variable) => {
    expect(fails(env).variable).toBe(variable);
  });

  it('when a socks proxy is set while private URLs are refused, then the start stops: the egress proxy chains over HTTP only', () => {
    const err = fails({ YTDLP_PROXY: 'socks5://user:secret@proxy:1080' });
    expect(err.variable).toBe('YTDLP_PROXY');
    expect(err.message).toContain('ALLOW_PRIVATE_URLS');
    expect(err.message).not.toContain('secret');
    expect(loadConfig({ YTDLP_PROXY: 'socks5://proxy:1080', ALLOW_PRIVATE_URLS: 'true' }).ytDlpProxy).toBe(
      'socks5://proxy:1080',
    );
  });
});
