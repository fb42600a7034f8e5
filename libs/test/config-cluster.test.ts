import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '@media-jobs/libs';

describe('cluster configuration', () => {
  it('when NATS_URL lists a cluster, then every server is kept in order', () => {
    const c = loadConfig({ NATS_URL: 'nats://a:4222, nats://b:4222 ,nats://c:4222', NATS_REPLICAS: '3' });
    expect(c.natsServers).toEqual(['nats://a:4222', 'nats://b:4222', 'nats://c:4222']);
    expect(c.natsUrl).toBe('nats://a:4222,nats://b:4222,nats://c:4222');
    expect(c.natsReplicas).toBe(3);
  });

  it('when REDIS_SENTINELS is set, then each host:port is parsed and the master name defaults to mymaster', () => {
    const c = loadConfig({ REDIS_SENTINELS: '10.0.0.1:26379,sentinel-2:26380,[::1]:26381' });
    expect(c.redisSentinels).toEqual([
      { host: '10.0.0.1', port: 26379 },
      { host: 'sentinel-2', port: 26380 },
      { host: '::1', port: 26381 },
    ]);
    expect(c.redisSentinelName).toBe('mymaster');
    expect(loadConfig({}).redisSentinels).toEqual([]);
  });

  it.each([
    ['NATS_URL', 'nats://a:4222,http://b'],
    ['NATS_URL', ','],
    ['NATS_REPLICAS', '0'],
    ['NATS_REPLICAS', '7'],
    ['REDIS_SENTINELS', 'host-without-port'],
    ['REDIS_SENTINELS', 'a:26379,b:99999'],
  ])('when %s=%j, then the config is refused with one line naming it', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^Invalid configuration: ${name}=`));
  });
});
